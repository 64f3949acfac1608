"""Destinations that cannot be written: no permission (EACCES), a read-only file system (EROFS), a full one
(ENOSPC), a file where a folder should be (ENOTDIR). Every command that writes ends in one line naming the folder
and the reason (exit 3), and leaves nothing behind: no staging folder, no partial file.

Real conditions, no mocks: a 0555 folder seen by an unprivileged user (root ignores modes, so as root the command
runs as uid 65534 in a user namespace), and small tmpfs mounts in a private mount namespace (``unshare``).
"""
import os
import subprocess
import sys

import pytest

from edgecsp.cli import main
from tests.gates import ROOT, needs

LEFT = "LEFT:"


def _one_line(err):
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _edgecsp(*args):
    return [sys.executable, "-m", "edgecsp"] + [str(a) for a in args]


def _unprivileged(argv):
    """``argv`` run by a user that file modes apply to."""
    if os.geteuid() == 0:
        needs("userns")
        argv = ["unshare", "--user", "--map-user=65534", "--map-group=65534"] + argv
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _on_tmpfs(folder, options, argv):
    """``argv`` run with a fresh tmpfs (mount ``options``) at ``folder``; (process, what the folder held after)."""
    needs("userns")
    script = 'mount -t tmpfs -o {} none "$0" || exit 99; "$@"; code=$?; echo "{}$(ls -A "$0")"; exit $code'.format(
        options, LEFT)
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(folder)] + argv,
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 99, proc.stderr
    left = [l[len(LEFT):] for l in proc.stdout.splitlines() if l.startswith(LEFT)]
    return proc, left[-1] if left else None


def test_a_folder_without_write_permission(demo_onnx, demo_video, shapes_val, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "keep.txt").write_text("there before")
    locked.chmod(0o555)
    try:
        for argv in (["data", "video", locked / "v.mp4", "--frames", "5"],
                     ["data", "shapes", locked / "set", "--count", "2"],
                     ["infer", "--engine", demo_onnx, demo_video[0], "--save-json", locked / "d.jsonl"],
                     ["infer", "--engine", demo_onnx, demo_video[0], "--save", locked / "o.mp4"],
                     ["build", "--target", "cpu-ort", demo_onnx, "-o", locked / "m.onnx"],
                     ["export", "shapes_tiny_csp", "--input-size", "64x64", "--no-verify", "-o", locked / "m.onnx"],
                     ["eval", "--engine", demo_onnx, "--data", shapes_val, "--report", locked / "r.json", "--no-coco"],
                     ["compare", "-e", demo_onnx, "-b", demo_onnx, "--count", "1", "--report", locked / "c.json"]):
            proc = _unprivileged(_edgecsp(*argv))
            line = _one_line(proc.stderr)
            assert proc.returncode == 3, proc.stderr
            assert str(locked) in line and "Permission denied (EACCES)" in line, line
            assert os.listdir(str(locked)) == ["keep.txt"], argv
    finally:
        locked.chmod(0o755)


def test_a_read_only_file_system(demo_onnx, demo_video, tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    for argv in (["data", "video", mount / "v.mp4", "--frames", "5"],
                 ["infer", "--engine", demo_onnx, demo_video[0], "--save-json", mount / "sub" / "d.jsonl"],
                 ["build", "--target", "cpu-ort", demo_onnx, "-o", mount / "m.onnx"]):
        proc, left = _on_tmpfs(mount, "ro,size=1m", _edgecsp(*argv))
        assert proc.returncode == 3, proc.stderr
        line = _one_line(proc.stderr)
        assert "Read-only file system (EROFS)" in line and str(mount) in line, line
        assert left == "", argv


@pytest.mark.openvino
def test_a_full_file_system(demo_onnx, demo_video, tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    for argv in (["data", "video", mount / "v.mp4", "--frames", "100"],
                 ["infer", "--engine", demo_onnx, demo_video[0], "--save", mount / "o.mp4", "--no-progress"],
                 ["infer", "--engine", demo_onnx, demo_video[0], "--save-json", mount / "d.jsonl", "--no-progress"],
                 ["build", "--target", "cpu", demo_onnx, "-o", mount / "m.xml"],
                 ["export", "shapes_tiny_csp", "--input-size", "64x64", "--no-verify", "-o", mount / "m.onnx"]):
        proc, left = _on_tmpfs(mount, "size=8k", _edgecsp(*argv))
        assert proc.returncode == 3, proc.stderr
        line = _one_line(proc.stderr)
        assert str(mount) in line and ("(ENOSPC)" in line or "file system is full" in line), line
        assert left == "", argv


def test_a_file_where_a_folder_should_be(demo_onnx, demo_video, shapes_val, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    for argv in (["data", "video", blocker / "v.mp4", "--frames", "5"],
                 ["data", "shapes", blocker / "sub" / "set", "--count", "2"],
                 ["infer", "--engine", demo_onnx, demo_video[0], "--save-json", blocker / "d.jsonl"],
                 ["build", "--target", "cpu-ort", demo_onnx, "-o", blocker / "sub" / "m.onnx"],
                 ["export", "shapes_tiny_csp", "--input-size", "64x64", "--no-verify", "-o", blocker / "m.onnx"],
                 ["eval", "--engine", demo_onnx, "--data", shapes_val, "--report", blocker / "r.json", "--no-coco"],
                 ["compare", "-e", demo_onnx, "-b", demo_onnx, "--report", blocker / "sub" / "c.json"],
                 ["bench", "--engine", demo_onnx, "--report", blocker / "b.json"]):
        assert main([str(a) for a in argv]) == 3, argv
        line = _one_line(capsys.readouterr().err)
        assert "{} is a file, not a folder".format(blocker) in line, line
    assert sorted(os.listdir(str(tmp_path))) == ["file"]


def test_the_writer_itself_names_the_folder_and_the_reason(tmp_path):
    """The library API gets the same InputError from the one writer (Staged) as the CLI."""
    from edgecsp._files import atomic_output, write_bytes_atomic
    from edgecsp.errors import InputError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        write_bytes_atomic(str(blocker / "a" / "b.json"), b"{}")
    with pytest.raises(InputError, match=r"cannot write b.bin in .*: No space left on device \(ENOSPC\)"):
        with atomic_output(str(tmp_path / "b.bin")):
            raise OSError(28, "No space left on device")  # what a write on a full disk raises
    assert sorted(os.listdir(str(tmp_path))) == ["file"]
