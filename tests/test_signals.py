"""SIGTERM (docker stop, systemd, Kubernetes) stops a command as Ctrl-C does: one line ("terminated"), exit code
143 (128 + 15), and nothing half-written left: no staging folder, no unplayable .partial video. An interrupted
``--save`` video is not there at all (a file at an output path is always a complete run's)."""
import os
import signal
import subprocess
import sys
import time

import pytest

from edgecsp.errors import EXIT_CODES, Terminated
from tests.gates import ROOT


def _edgecsp(*args):
    return [sys.executable, "-m", "edgecsp"] + [str(a) for a in args]


def _terminate_once_writing(argv, folder, started, timeout=120):
    """Run ``argv``; SIGTERM it once ``started(folder)`` is true; returns (exit code, stderr)."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    try:
        while not started(str(folder)):
            if proc.poll() is not None:
                pytest.fail("{} ended (code {}) before it wrote anything: {}".format(argv, proc.returncode,
                                                                                   proc.stderr.read()))
            if time.time() > deadline:
                pytest.fail("{} wrote nothing in {} s".format(argv, timeout))
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def _staged_bytes(folder):
    """Bytes written so far into the staging folders (``.NAME.PID-XXXX.partial``) of ``folder``."""
    total = 0
    for name in os.listdir(folder):
        if name.endswith(".partial"):
            for root, _, files in os.walk(os.path.join(folder, name)):
                total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def _one_line(err):
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_143_is_documented():
    assert (Terminated.exit_code, dict(EXIT_CODES)[143]) == (143, dict(EXIT_CODES)[Terminated.exit_code])
    assert "SIGTERM" in dict(EXIT_CODES)[143]


def test_sigterm_while_generating_a_video_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code, err = _terminate_once_writing(_edgecsp("data", "video", out / "v.mp4", "--frames", "100000", "--size",
                                                 "64x64"), out, lambda f: _staged_bytes(f) > 0)
    assert code == 143 and _one_line(err) == "edgecsp data: terminated", err
    assert os.listdir(str(out)) == []


@pytest.mark.opencv
@pytest.mark.av
def test_sigterm_during_infer_save_leaves_no_partial_video(demo_onnx, tmp_path):
    from edgecsp.data.shapes import generate_video

    video = str(tmp_path / "long.mp4")
    generate_video(video, 1500, seed=3, size=(96, 128))
    out = tmp_path / "out"
    out.mkdir()
    argv = _edgecsp("infer", "--engine", demo_onnx, video, "--save", out / "annotated.mp4", "--save-json",
                    out / "d.jsonl", "--no-progress")
    code, err = _terminate_once_writing(argv, out, lambda f: _staged_bytes(f) > 4096)
    assert code == 143 and _one_line(err) == "edgecsp infer: terminated", err
    assert os.listdir(str(out)) == []  # neither the video nor the detections, and no staging folder
    # the same run left alone writes a playable video: the signal, not the setup, is what left nothing
    assert subprocess.run(argv[:-1] + ["--max-frames", "20", "--no-progress"], cwd=ROOT,
                          capture_output=True).returncode == 0
    import cv2

    capture = cv2.VideoCapture(str(out / "annotated.mp4"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 20


def test_a_second_sigterm_does_not_cut_the_cleanup_short(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(_edgecsp("data", "video", out / "v.mp4", "--frames", "100000", "--size", "64x64"),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while _staged_bytes(str(out)) == 0 and proc.poll() is None:
            time.sleep(0.01)
        for _ in range(3):
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and _one_line(err) == "edgecsp data: terminated", err
    assert os.listdir(str(out)) == []


_IN_PROCESS = r"""
import io, json, os, signal, sys, threading, time
sys.path.insert(0, sys.argv[2])
from edgecsp.cli import main
from tests.test_signals import _staged_bytes

folder = sys.argv[1]
seen, done = [], threading.Event()
mine = lambda *_: seen.append("the test's handler")


def terminate_once_writing():
    while _staged_bytes(folder) == 0 and not done.is_set():
        time.sleep(0.01)
    if not done.is_set():
        os.kill(os.getpid(), signal.SIGTERM)


previous = signal.signal(signal.SIGTERM, mine)
killer = threading.Thread(target=terminate_once_writing)
killer.start()
err, sys.stderr = sys.stderr, io.StringIO()
try:
    code = main(["data", "video", os.path.join(folder, "v.mp4"), "--frames", "100000", "--size", "32x32"])
finally:
    done.set()
    killer.join()
    handler_after = signal.signal(signal.SIGTERM, previous)
    captured, sys.stderr = sys.stderr.getvalue(), err
print(json.dumps({"code": code, "err": captured, "seen": seen, "mine": handler_after is mine,
                  "left": os.listdir(folder)}))
"""


def test_in_process_sigterm_returns_143_and_puts_back_the_handler_it_found(tmp_path):
    # main() in a process of its own (as the CLI always runs), not in the test runner's: the runner has loaded a
    # thousand tests' native libraries by now, whose own signal handling is not what this test is about
    import json

    done = subprocess.run([sys.executable, "-c", _IN_PROCESS, str(tmp_path), ROOT], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 143 and _one_line(result["err"]) == "edgecsp data: terminated"
    assert result["seen"] == [] and result["mine"] and result["left"] == []
