"""Files: hashing, input checks, and the one way edgecsp writes an output (standard library only, Python 3.6).

Every artefact, report, cache, bundle and video edgecsp writes goes through :class:`Staged`: the content is
written into a hidden staging folder next to the destination (same file system, so the final rename is atomic),
each file is fsynced, and only then renamed into place, the file that makes the artefact look complete last.
Leaving through any exception, KeyboardInterrupt included, deletes the staging folder; a process killed outright
(SIGKILL, power cut) leaves only a hidden ``.NAME.PID-XXXXXXXX.partial`` entry, which the next writer of the same
destination removes once that process is gone. A file at a destination path is therefore always complete.
A commit of several files holds an exclusive ``flock`` on the destination folder, and :func:`reading` a shared one,
so two builds of one IR never leave the .xml of one beside the .bin of the other, and a reader never sees a mix.
A destination that cannot be written (read-only, no permission, full, a file in the way) is an InputError naming
the folder and the reason, with the staging folder gone.

Inputs are sacred: :func:`check_paths` reads a command's declaration of which paths it reads and writes and
refuses, before any work, an output that is (or resolves to) an input or one of its companions (an IR's .bin...),
sits inside an input folder, or is a folder holding an input.
"""
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid

from edgecsp.errors import EdgeCSPError, InputError

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


# errno -> how to fix a destination that cannot be written
_SAME_FIX = "pick a folder you can write to, or change its permissions"
_WRITE_FIXES = {
    errno.EACCES: _SAME_FIX, errno.EPERM: _SAME_FIX,
    errno.EROFS: "pick a folder on a writable file system",
    errno.ENOSPC: "free some space or pick a folder on another file system",
    errno.EDQUOT: "the disk quota is used up: free some space or pick another folder",
    errno.EFBIG: "the file is larger than this file system or process allows: pick another folder",
    errno.ENOTDIR: "a file is in the way of a folder on the path: remove it or pick another output path",
    errno.ENAMETOOLONG: "the name is too long: pick a shorter output path",
}
# these say something about the destination whatever file they name; the others only when they name a path in it
_ALWAYS_THE_DESTINATION = (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
LOW_SPACE_BYTES = 1 << 20  # a writer failing with less than this free in its folder failed for want of space


def _within(path, folder):
    try:
        path, folder = os.path.abspath(str(path)), os.path.abspath(str(folder))
        return path == folder or os.path.commonpath([path, folder]) == folder
    except (TypeError, ValueError):
        return False


def _free_bytes(folder):
    try:
        info = os.statvfs(folder)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def write_failure(exc, folder, path=None):
    """The InputError to raise when ``exc`` says that ``path`` in ``folder`` cannot be written, or None when it says
    something else. An error of a library that hides the errno (OpenVINO, ONNX, OpenCV) counts when the folder's
    file system has under LOW_SPACE_BYTES left."""
    if isinstance(exc, EdgeCSPError):
        return None
    what = "{} in {}".format(os.path.basename(str(path)), folder) if path else "into " + folder
    if isinstance(exc, OSError) and exc.errno in _WRITE_FIXES:
        if exc.errno not in _ALWAYS_THE_DESTINATION and not (exc.filename and _within(exc.filename, folder)):
            return None
        return InputError("cannot write {}: {} ({}): {}".format(
            what, exc.strerror or os.strerror(exc.errno), errno.errorcode.get(exc.errno, exc.errno),
            _WRITE_FIXES[exc.errno]))
    # the libraries that hide the errno raise RuntimeError (OpenVINO, onnx) or cv2.error; a bug of another type
    # keeps its traceback even on a full disk
    hidden = isinstance(exc, (RuntimeError, IOError)) or type(exc).__name__ == "error"
    free = _free_bytes(folder) if hidden else None
    if free is not None and free < LOW_SPACE_BYTES:
        return InputError("cannot write {}: the file system is full ({} bytes free; the writer failed with {}): "
                          "{}".format(what, free, type(exc).__name__, _WRITE_FIXES[errno.ENOSPC]))
    return None


def check_space(folder, path=None):
    """InputError when ``folder``'s file system is full (under LOW_SPACE_BYTES free): for writers that report no
    error when a write fails (OpenCV's VideoWriter cuts the file short)."""
    free = _free_bytes(folder)
    if free is not None and free < LOW_SPACE_BYTES:
        raise write_failure(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), folder, path)


def _nearest_existing(folder):
    """``folder`` or its nearest ancestor that exists (as a folder, or as a file in the way of one)."""
    while not os.path.lexists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


def _make_folder(folder):
    if os.path.isdir(folder):
        return
    blocker = _nearest_existing(folder)
    if not os.path.isdir(blocker):
        raise InputError("cannot create output folder {}: {} is a file, not a folder: remove it or pick another "
                         "output path".format(folder, blocker))
    try:
        os.makedirs(folder)
    except OSError as exc:
        if exc.errno == errno.EEXIST and os.path.isdir(folder):
            return  # another writer made it just now
        raise InputError("cannot create output folder {}: {} ({}): {}".format(
            folder, exc.strerror or exc, errno.errorcode.get(exc.errno, exc.errno),
            _WRITE_FIXES.get(exc.errno, "pick another output path")))


@contextlib.contextmanager
def _folder_lock(folder, shared=False):
    """``flock`` on ``folder`` itself (no lock file to leave behind): exclusive around a commit of several files,
    shared around a read of several. A file system without flock (some network mounts) goes on unlocked."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def reading(path):
    """``with reading(path):`` read an artefact of several files (an IR's .xml and .bin) while no commit of that
    folder runs: the files read all belong to one build."""
    return _folder_lock(os.path.dirname(os.path.abspath(str(path))), shared=True)


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
        if any(not str(p) for p in paths):  # abspath("") is the working folder: never a destination by mistake
            raise InputError("an output path is empty: give a file name")
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
        self.done = False
        try:
            os.mkdir(self.staging)
        except OSError as exc:
            self.done = True
            raise write_failure(exc, self.folder, self.paths[-1]) or InputError(
                "cannot write into {}: {}: pick another output path".format(self.folder, exc.strerror or exc))
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
            elif len(self.paths) > 1 or self.remove:
                with _folder_lock(self.folder):  # several renames: one commit at a time in this folder
                    self._commit_files()
            else:
                self._commit_files()
            _fsync(self.folder, directory=True)
        except Exception as exc:
            raise self.failure(exc) or exc
        finally:
            self.abort()
        return list(self.paths)

    def failure(self, exc):
        """The InputError that ``exc``, raised while writing this output, means (a full, read-only or
        unwritable destination), or None when it means something else (``write_failure``)."""
        return write_failure(exc, self.folder, self.paths[-1])

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
            except OSError as exc:
                if old and not os.path.lexists(path):
                    os.rename(old, path)  # the new folder did not land: the old one goes back, not away
                    old = None
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                continue
            finally:
                if old:
                    _remove(old)
            return
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
            return False
        failure = self.failure(exc)  # before abort: the space the staged files take counts
        self.abort()
        if failure is not None:
            raise failure
        return False


@contextlib.contextmanager
def atomic_outputs(*paths, **options):
    """``with atomic_outputs(a, b) as (tmp_a, tmp_b):`` write the temporaries; on success they replace ``a``
    then ``b`` (``remove=[...]``: stale paths deleted just before). Any exception deletes them."""
    with Staged(paths, remove=options.get("remove", ())) as staged:
        yield list(staged.staged)


@contextlib.contextmanager
def atomic_output(path):
    """``with atomic_output(path) as tmp:`` write ``tmp`` (same name, in a staging folder); committed on success."""
    with atomic_outputs(path) as staged:
        yield staged[0]


@contextlib.contextmanager
def atomic_folder(path):
    """``with atomic_folder(path) as tmp:`` fill the folder ``tmp``; on success it replaces ``path`` whole."""
    with Staged([path], folder=True) as staged:
        yield staged.staging


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


# -- inputs are sacred: no output may replace, or sit inside, what a command reads ---------------------------------
# A command declares its paths as ``((field, flag, role), ...)`` (its library config's fields, or its CLI
# arguments) and calls ``check_paths(config, DECLARATION)`` before any work.
READS = "reads"  # a file or folder the command reads, with its COMPANIONS
READS_SPEC = "reads spec"  # a source or spec: a path, or no path at all (camera index, URL, shapes:SEED), or
# PREFIX:FILE[,FILE] (torch:CFG,WEIGHTS, opencv:CFG,WEIGHTS) whose existing files are read
WRITES = "writes"  # a file, or a folder replaced whole or filled with files named after the inputs
WRITES_INTO = "writes into"  # a folder new entries go into, never replacing what is there (a model repository)
ROLES = (READS, READS_SPEC, WRITES, WRITES_INTO)
# the files an artefact brings along, read and replaced with it (suffixes -> name templates): an IR's weights, a
# TensorRT engine's sidecar manifest, the INT8 provenance record, ONNX Runtime's calibration ranges
# (tests/test_output_paths.py checks these against the backends' own path functions)
COMPANIONS = (
    ((".xml",), ("{stem}.bin",)),
    ((".engine", ".trt", ".plan"), ("{path}.json",)),
    ((".onnx", ".xml", ".engine", ".trt", ".plan"), ("{stem}.calibration.json", "{stem}.calibration-ranges.json")),
)
_SPEC = re.compile(r"^(?P<prefix>[A-Za-z][A-Za-z0-9_+.-]+):(?P<rest>.*)$")


def companions(path):
    """The files that belong to the artefact at ``path`` (``m.xml`` -> ``m.bin``, ``m.calibration.json``...)."""
    path = str(path)
    stem, suffix = os.path.splitext(path)
    return [t.format(stem=stem, path=path) for suffixes, templates in COMPANIONS if suffix.lower() in suffixes
            for t in templates]


def spec_paths(value):
    """The file system paths a source or spec reads: ``[]`` for a camera index, a URL or ``shapes:SEED``, the
    existing files of ``PREFIX:A,B``, and the value itself for anything else."""
    if value is None or isinstance(value, (int, float)):
        return []
    value = str(value)
    if os.path.lexists(value):
        return [value]
    if value.lower().startswith("file://"):  # FFmpeg and OpenCV open file:// URLs: the file is read
        from urllib.parse import unquote, urlparse

        return [unquote(urlparse(value).path)]
    if "://" in value or value.isdigit():
        return []
    match = _SPEC.match(value)
    if match:
        return [part for part in match.group("rest").split(",") if part and os.path.lexists(part)]
    return [value]


class _Place(object):
    """A declared path as the file system sees it: resolved (symlinks, ``..``) and, when it exists, its inode."""

    def __init__(self, flag, path, owner=None, into=False, output=False):
        self.flag, self.path, self.owner, self.into = flag, str(path), owner, into
        try:
            # an output goes where Staged puts it (``..`` taken lexically, ~ expanded), an input is read where the
            # kernel finds it (a symlink resolved before the ``..`` after it)
            self.real = os.path.realpath(os.path.abspath(os.path.expanduser(self.path)) if output else self.path)
            info = os.stat(self.real)
        except (ValueError, UnicodeError) as exc:  # a NUL byte, a lone surrogate
            raise InputError("{} {!r} is not a usable path ({}): pass a file name".format(flag, self.path, exc))
        except OSError:
            info = None
        self.node = (info.st_dev, info.st_ino) if info is not None else None
        self.is_dir = info is not None and os.path.isdir(self.real)

    def same(self, other):
        return self.real == other.real or (self.node is not None and self.node == other.node)

    def inside(self, other):
        return self.real != other.real and _within(self.real, other.real)

    def describe(self):
        if self.owner is not None:
            return "{}, which belongs to the source {} ({})".format(self.path, self.owner, self.flag)
        return "the source {}{} ({})".format("folder " if self.is_dir else "", self.path, self.flag)


def check_outputs_apart(inputs, outputs):
    """InputError unless every output stays clear of every input: ``inputs`` are ``(flag, path)`` pairs (their
    companions are added), ``outputs`` ``(flag, path)`` or ``(flag, path, into)`` (``into``: a folder that only
    gets new entries, which may hold inputs). Refused: an output that is an input (the same path through symlinks,
    ``..`` or a hard link), an output inside an input folder, an output folder holding an input (folders are
    replaced whole or filled with files named like the inputs), and two outputs at one path."""
    read = []
    for flag, path in inputs:
        read.append(_Place(flag, path))
        real = read[-1].real  # an artefact given through a symlink: the companions of both names
        read += [_Place(flag, c, owner=path) for c in sorted(set(companions(path) + companions(real)))]
    written = [_Place(o[0], o[1], into=len(o) > 2 and bool(o[2]), output=True) for o in outputs]
    for out in written:
        for src in read:
            if out.same(src):
                problem = "would overwrite " + src.describe()
            elif src.is_dir and out.inside(src):
                problem = "is inside " + src.describe() + ", which this command reads"
            elif not out.into and src.inside(out):
                problem = "is a folder holding {}: an output folder is replaced whole or filled with files named " \
                          "like the inputs".format(src.describe())
            else:
                continue
            raise InputError("{} {} {}: pick another {} path".format(out.flag, out.path, problem, out.flag))
    for i, out in enumerate(written):
        for other in written[:i]:
            if out.same(other):
                raise InputError("{} and {} both write {}: give them different paths".format(
                    other.flag, out.flag, out.path))


def _values(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def declared_paths(config, declaration, **resolved):
    """``(inputs, outputs)`` for ``check_outputs_apart`` from ``config`` (a NamedTuple, an argparse Namespace or
    a dict) and its ``declaration``; ``resolved`` gives the value a field really has (a default output name)."""
    inputs, outputs = [], []
    for field, flag, role in declaration:
        if role not in ROLES:
            raise ValueError("unknown path role {!r} for {}".format(role, field))
        if field in resolved:
            value = resolved[field]
        else:
            value = config.get(field) if isinstance(config, dict) else getattr(config, field, None)
        for item in _values(value):
            if str(item) == "":  # read: names no file; written: the working folder to some writers
                if role in (READS, READS_SPEC):
                    continue
                raise InputError("{} is an empty path: give a file name, or leave {} out".format(flag, flag))
            if role == READS:
                inputs.append((flag, item))
            elif role == READS_SPEC:
                inputs += [(flag, path) for path in spec_paths(item)]
            else:
                outputs.append((flag, item, role == WRITES_INTO))
    return inputs, outputs


def check_paths(config, declaration, **resolved):
    """Refuse (InputError) a ``config`` whose outputs would replace or sit inside its inputs (see
    ``check_outputs_apart``), and an output whose folder cannot be written; run it before any work."""
    inputs, outputs = declared_paths(config, declaration, **resolved)
    check_outputs_apart(inputs, outputs)
    for flag, path, _ in outputs:
        check_writable(str(path), flag)


def check_writable(path, flag="output"):
    """InputError when the folder ``path`` would be staged in cannot take a new entry (tried with a hidden folder
    made and removed at once): no permission, a read-only file system, a file where a folder should be."""
    folder = _nearest_existing(os.path.dirname(os.path.abspath(os.path.expanduser(path))))
    if not os.path.isdir(folder):
        raise InputError("{} {}: {} is a file, not a folder: remove it or pick another output path".format(
            flag, path, folder))
    probe = os.path.join(folder, ".{}.{}-{}.partial".format(os.path.basename(path) or "probe", os.getpid(),
                                                           uuid.uuid4().hex[:8]))
    try:
        os.mkdir(probe)
    except OSError as exc:
        raise write_failure(exc, folder, path) or InputError("{} {}: cannot write into {}: {}".format(
            flag, path, folder, exc.strerror or exc))
    os.rmdir(probe)
