"""Files: hashing, input checks, and the one way edgecsp writes an output (standard library only, Python 3.6).

Every artefact, report, cache, bundle and video edgecsp writes goes through :class:`Staged`: the content is
written into a hidden staging folder next to the destination (same file system, so the final rename is atomic),
each file is fsynced, and only then renamed into place, the file that makes the artefact look complete last.
Leaving through any exception, KeyboardInterrupt included, deletes the staging folder; a process killed outright
(SIGKILL, power cut) leaves only a hidden ``.NAME.PID-XXXXXXXX.partial`` entry, which the next writer of the same
destination removes once that process is gone. A file at a destination path is therefore always complete.
"""
import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import uuid

from edgecsp.errors import InputError

_LEFTOVER = re.compile(r"^\.(?P<base>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.(?:partial|old)$")


def file_sha256(path):
    # type: (str) -> str
    """Hex sha256 of a file, read in 1 MiB blocks (engines and ONNX files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def require_file(path, what="model", hint="pass the path of an artefact built by `edgecsp build`"):
    # type: (str, str, str) -> str
    """``path`` as a string if it is an existing file; InputError saying ``hint`` otherwise."""
    path = str(path)
    if not os.path.isfile(path):
        raise InputError("{} {} not found: {}".format(what, path, hint))
    return path


# -- writing ---------------------------------------------------------------------------------------------------
def _pid_alive(pid):
    # type: (int) -> bool
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM  # alive, owned by someone else
    return True


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.remove(path)
        except OSError:
            pass


def sweep_leftovers(folder, base):
    """Remove the staging entries that killed writers of ``folder/base`` left behind; returns what was removed."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _LEFTOVER.match(name)
        if match and match.group("base") == base and not _pid_alive(int(match.group("pid"))):
            _remove(os.path.join(folder, name))
            removed.append(name)
    return removed


def _fsync(path, directory=False):
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (network, FUSE) refuse fsync; the rename is still atomic
    finally:
        os.close(fd)


def _make_folder(folder):
    try:
        if not os.path.isdir(folder):
            os.makedirs(folder)
    except OSError as exc:
        raise InputError("cannot create output folder {}: {}".format(folder, exc.strerror or exc))


class Staged(object):
    """The destinations ``paths`` (files in one folder, or one folder with ``folder=True``), staged until
    :meth:`commit`. ``staged`` holds the path to write for each destination, in the same order.

    ``sidecar(path)`` adds a destination that goes into place before the others (a provenance record, a cache).
    ``commit()`` fsyncs and renames every staged entry into place in order (name the file that makes the
    artefact look complete last), after deleting the paths of ``remove`` (stale sidecars of an earlier build, or
    a destination that must not stay beside its new companions while they land); ``abort()`` deletes the staging
    folder. Use :func:`atomic_output`, :func:`atomic_outputs` or :func:`atomic_folder` unless the writer lives
    longer than one ``with`` block (the video and JSON-lines writers).
    """

    def __init__(self, paths, folder=False, remove=()):
        self.remove = [os.path.abspath(str(p)) for p in remove]
        self.paths = [os.path.abspath(os.path.expanduser(str(p))) for p in paths]
        if not self.paths:
            raise ValueError("Staged needs at least one destination")
        parents = set(os.path.dirname(p) for p in self.paths)
        if len(parents) != 1 or (folder and len(self.paths) != 1):
            raise ValueError("staged destinations must be files of one folder, or one folder: {}".format(self.paths))
        self.folder = parents.pop()
        self.is_folder = bool(folder)
        for path in self.paths:
            if not os.path.basename(path):
                raise InputError("output path {} names a folder: give a file name".format(path))
            if os.path.isdir(path) and not folder:
                raise InputError("output path {} is an existing folder: give a file name".format(path))
            if folder and os.path.exists(path) and not os.path.isdir(path):
                raise InputError("output folder {} is an existing file: remove it or pick another name".format(path))
        _make_folder(self.folder)
        base = os.path.basename(self.paths[0])
        sweep_leftovers(self.folder, base)
        self._tag = "{}-{}".format(os.getpid(), uuid.uuid4().hex[:8])
        self.staging = os.path.join(self.folder, ".{}.{}.partial".format(base, self._tag))
        os.mkdir(self.staging)
        self.done = False
        if folder:
            self.staged = [self.staging]
        else:
            self.staged = [os.path.join(self.staging, os.path.basename(p)) for p in self.paths]

    def sidecar(self, path):
        # type: (str) -> str
        """Stage one more file of the same folder, moved into place before the others; returns its staged path."""
        path = os.path.abspath(os.path.expanduser(str(path)))
        if self.is_folder or os.path.dirname(path) != self.folder or path in self.paths:
            raise ValueError("a sidecar is another file next to the staged ones: {}".format(path))
        staged = os.path.join(self.staging, os.path.basename(path))
        self.paths.insert(0, path)
        self.staged.insert(0, staged)
        return staged

    def commit(self):
        """Move everything staged into place; returns the destination paths."""
        if self.done:
            raise RuntimeError("this staged output was already committed or aborted")
        try:
            if self.is_folder:
                self._commit_folder()
            else:
                self._commit_files()
            _fsync(self.folder, directory=True)
        finally:
            self.abort()
        return list(self.paths)

    def _commit_files(self):
        missing = [p for p in self.staged if not os.path.isfile(p)]
        if missing:
            raise RuntimeError("nothing was written to staged file(s) {}".format(", ".join(missing)))
        for path in self.staged:
            _fsync(path)  # the rename must not land before the data on a power cut (Jetsons get unplugged)
        for stale in self.remove:
            if os.path.isfile(stale):
                os.remove(stale)
        for staged, path in zip(self.staged, self.paths):
            os.replace(staged, path)

    def _commit_folder(self):
        for root, _, files in os.walk(self.staging):
            for name in files:
                _fsync(os.path.join(root, name))
        path = self.paths[0]
        for _ in range(10):  # another writer may swap its folder in between: move it aside and try again
            old = os.path.join(self.folder, ".{}.{}.old".format(os.path.basename(path), self._tag))
            try:
                os.rename(path, old)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                old = None
            try:
                os.rename(self.staging, path)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            finally:
                if old:
                    _remove(old)
        raise InputError("cannot move folder {} into place: other writers keep replacing it".format(path))

    def abort(self):
        """Delete whatever was staged; the destinations are left as they were. Safe to call twice."""
        self.done = True
        if os.path.lexists(self.staging):
            _remove(self.staging)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


@contextlib.contextmanager
def atomic_outputs(*paths, **options):
    """``with atomic_outputs(a, b) as (tmp_a, tmp_b):`` write the temporaries; on success they replace ``a``
    then ``b`` (``remove=[...]``: stale paths deleted just before). Any exception deletes them."""
    staged = Staged(paths, remove=options.get("remove", ()))
    try:
        yield list(staged.staged)
    except BaseException:
        staged.abort()
        raise
    staged.commit()


@contextlib.contextmanager
def atomic_output(path):
    """``with atomic_output(path) as tmp:`` write ``tmp`` (same name, in a staging folder); committed on success."""
    with atomic_outputs(path) as staged:
        yield staged[0]


@contextlib.contextmanager
def atomic_folder(path):
    """``with atomic_folder(path) as tmp:`` fill the folder ``tmp``; on success it replaces ``path`` whole."""
    staged = Staged([path], folder=True)
    try:
        yield staged.staging
    except BaseException:
        staged.abort()
        raise
    staged.commit()


def write_bytes_atomic(path, data):
    """Write ``data`` (bytes) to ``path`` atomically; returns ``path``."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
    return str(path)


def write_text_atomic(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def json_text(payload, indent=2, sort_keys=True):
    # type: (object, int, bool) -> str
    """How edgecsp writes JSON files: indented, sorted keys, a final newline."""
    return json.dumps(payload, indent=indent, sort_keys=sort_keys) + "\n"


def write_json(path, payload):
    """Write ``payload`` as JSON to ``path`` directly: for paths that are already staged (``Staged.staged``)."""
    with open(str(path), "w") as handle:
        handle.write(json_text(payload))
    return str(path)


def write_json_atomic(path, payload, indent=2, sort_keys=True):
    """Write ``payload`` as JSON (and a final newline) to ``path`` atomically; returns ``path``."""
    return write_text_atomic(path, json_text(payload, indent, sort_keys))
