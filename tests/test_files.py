"""The one atomic writer (edgecsp._files): staging, commit order, cleanup on any exception, leftovers of killed
writers, concurrent writers, and `edgecsp build` / `edgecsp export` killed with SIGKILL half-way."""
import os
import signal
import subprocess
import sys
import time

import pytest

from edgecsp._files import (Staged, atomic_folder, atomic_output, atomic_outputs, sweep_leftovers, write_bytes_atomic,
                            write_json_atomic)
from edgecsp.errors import InputError
from tests.gates import ROOT


def _entries(folder):
    return sorted(os.listdir(str(folder)))


def test_nothing_appears_until_commit_and_an_exception_leaves_nothing(tmp_path):
    path = tmp_path / "sub" / "a.bin"  # the folder is created
    with atomic_output(str(path)) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(b"x" * 10)
        assert os.path.basename(tmp) == "a.bin" and not path.exists()
    assert path.read_bytes() == b"x" * 10 and _entries(path.parent) == ["a.bin"]
    for error in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(error):
            with atomic_output(str(path)) as tmp:
                with open(tmp, "wb") as handle:
                    handle.write(b"half")
                raise error()
        assert path.read_bytes() == b"x" * 10 and _entries(path.parent) == ["a.bin"]


def test_files_land_in_order_with_sidecars_first_and_stale_ones_removed(tmp_path):
    stale = tmp_path / "m.calibration.json"
    stale.write_text("old record")
    landed = []
    real_replace = os.replace

    def spy(src, dst):
        landed.append(os.path.basename(dst))
        real_replace(src, dst)

    staged = Staged([str(tmp_path / "m.bin"), str(tmp_path / "m.xml")], remove=[str(stale)])
    for path in staged.staged:
        open(path, "w").close()
    open(staged.sidecar(str(tmp_path / "m.json")), "w").close()
    os.replace = spy
    try:
        staged.commit()
    finally:
        os.replace = real_replace
    assert landed == ["m.json", "m.bin", "m.xml"] and _entries(tmp_path) == ["m.bin", "m.json", "m.xml"]


def test_a_folder_is_replaced_whole(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("previous bundle")
    with atomic_folder(str(out)) as folder:
        with open(os.path.join(folder, "new.txt"), "w") as handle:
            handle.write("new")
        assert _entries(out) == ["old.txt"]
    assert _entries(out) == ["new.txt"] and _entries(tmp_path) == ["bundle"]
    with pytest.raises(InputError, match="is an existing folder"):
        with atomic_outputs(str(out)):
            pass


def test_leftovers_of_dead_writers_are_swept_and_live_ones_kept(tmp_path):
    # stdout=PIPE, universal_newlines: this module also runs on Python 3.6 (tests/device/test_python36_device.py)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], stdout=subprocess.PIPE,
                          universal_newlines=True)
    dead_pid = int(dead.stdout)
    (tmp_path / ".a.xml.{}-0123abcd.partial".format(dead_pid)).mkdir()
    (tmp_path / ".a.xml.{}-0123abcd.old".format(dead_pid)).mkdir()
    (tmp_path / ".a.xml.{}-89abcdef.partial".format(os.getppid())).mkdir()  # a live process: untouched
    (tmp_path / ".b.xml.{}-0123abcd.partial".format(dead_pid)).mkdir()  # another artefact's: untouched
    assert sorted(sweep_leftovers(str(tmp_path), "a.xml")) == [".a.xml.{}-0123abcd.old".format(dead_pid),
                                                               ".a.xml.{}-0123abcd.partial".format(dead_pid)]
    assert len(_entries(tmp_path)) == 2


_HAMMER = r"""
import sys
from edgecsp._files import write_bytes_atomic
path, fill = sys.argv[1], sys.argv[2].encode()
for _ in range(40):
    write_bytes_atomic(path, fill * (1 << 20))
"""


def test_two_processes_writing_one_file_at_once_leave_one_complete_file(tmp_path):
    path = str(tmp_path / "shared.bin")
    procs = [subprocess.Popen([sys.executable, "-c", _HAMMER, path, fill], cwd=ROOT) for fill in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    data = open(path, "rb").read()
    assert data in (b"a" * (1 << 20), b"b" * (1 << 20))  # all of one writer, never a mix or a prefix
    assert _entries(tmp_path) == ["shared.bin"]


def _cli(*args):
    return [sys.executable, "-m", "edgecsp"] + list(args)


def _kill_when_staging(argv, folder, timeout=120):
    """Start ``argv``, SIGKILL it as soon as a staging entry appears in ``folder``; the staging names seen."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            staged = [n for n in os.listdir(str(folder)) if n.endswith(".partial")]
            if staged:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return staged
            if proc.poll() is not None:
                pytest.fail("{} ended (code {}) before it staged anything".format(argv, proc.returncode))
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            proc.kill()
    pytest.fail("{} staged nothing in {} s".format(argv, timeout))


@pytest.mark.torch
@pytest.mark.onnxruntime
@pytest.mark.openvino
def test_export_and_build_killed_half_way_leave_nothing_a_later_run_trips_on(tmp_path):
    onnx_path, xml = tmp_path / "m.onnx", tmp_path / "m.xml"
    export = _cli("export", "shapes_tiny_csp", "--input-size", "128x128", "-o", str(onnx_path))
    assert _kill_when_staging(export, tmp_path)
    assert not onnx_path.exists()  # nothing at the output path
    assert subprocess.run(export, cwd=ROOT, capture_output=True).returncode == 0
    assert _entries(tmp_path) == ["m.onnx"]  # the next run removed the killed one's staging folder
    build = _cli("build", "--target", "cpu", str(onnx_path), "-o", str(xml))
    assert _kill_when_staging(build, tmp_path)
    assert not xml.exists() and not (tmp_path / "m.bin").exists()
    assert subprocess.run(build, cwd=ROOT, capture_output=True).returncode == 0
    assert _entries(tmp_path) == ["m.bin", "m.onnx", "m.xml"]


@pytest.mark.onnx
@pytest.mark.onnxruntime
def test_two_builds_of_one_artefact_at_once_both_finish_with_one_loadable_result(tiny_detector_onnx, tmp_path):
    from edgecsp.backends import open_runner

    out = str(tmp_path / "same.onnx")
    build = _cli("build", "--target", "cpu-ort", tiny_detector_onnx, "-o", out)
    procs = [subprocess.Popen(build, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    assert _entries(tmp_path) == ["same.onnx"]
    with open_runner(out) as runner:
        assert runner.meta.extra["target"] == "cpu-ort"


def test_json_goes_through_the_same_writer(tmp_path):
    path = write_json_atomic(str(tmp_path / "r.json"), {"b": 1, "a": [1, 2]})
    assert open(path).read() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert write_bytes_atomic(str(tmp_path / "x"), b"1") == str(tmp_path / "x")


def test_one_rename_into_place_in_the_package():
    """Every writer goes through edgecsp._files: no other module renames files into place."""
    offenders = []
    for folder, _, files in os.walk(os.path.join(ROOT, "edgecsp")):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and path != os.path.join(ROOT, "edgecsp", "_files.py"):
                text = open(path).read()
                if "os.replace(" in text or "os.rename(" in text or "mkstemp(" in text:
                    offenders.append(os.path.relpath(path, ROOT))
    assert offenders == []


_PAIR_WRITER = r"""
import sys
from edgecsp._files import Staged
folder, tag = sys.argv[1], sys.argv[2]
for i in range(int(sys.argv[3])):
    token = "{}-{}".format(tag, i).encode() * 4096
    with Staged([folder + "/m.bin", folder + "/m.xml"]) as staged:  # the .bin, then the .xml, as an IR lands
        for path in staged.staged:
            with open(path, "wb") as handle:
                handle.write(token)
"""


def test_commits_of_two_files_are_serialised_between_processes_and_readers_see_one_build(tmp_path):
    """Two processes committing the same .xml/.bin pair over and over (two `edgecsp build`s of one IR): a reader
    holding ``reading`` never sees the .xml of one beside the .bin of the other, and the last pair matches."""
    from edgecsp._files import reading

    folder = str(tmp_path)
    writers = [subprocess.Popen([sys.executable, "-c", _PAIR_WRITER, folder, tag, "300"], cwd=ROOT)
               for tag in ("a", "b")]
    reads, mixed = 0, []
    while any(w.poll() is None for w in writers):
        with reading(os.path.join(folder, "m.xml")):
            try:
                xml, weights = open(os.path.join(folder, "m.xml"), "rb").read(), open(
                    os.path.join(folder, "m.bin"), "rb").read()
            except FileNotFoundError:  # before the first commit
                continue
        reads += 1
        if xml != weights:
            mixed.append((xml[:8], weights[:8]))
    assert [w.returncode for w in writers] == [0, 0]
    assert reads > 0 and mixed == []
    assert open(os.path.join(folder, "m.xml"), "rb").read() == open(os.path.join(folder, "m.bin"), "rb").read()
    assert _entries(tmp_path) == ["m.bin", "m.xml"]  # the lock is the folder's own: no lock file is left
