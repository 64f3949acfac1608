"""Other libraries' chatter stays out of edgecsp's output (edgecsp._quiet): OpenCV/FFmpeg on a broken video, NNCF's
INFO lines and progress bars, ONNX Runtime's pre-processing advice. The commands run in child processes: FFmpeg
writes to file descriptor 2 from C, and NNCF's handler holds the stdout of the process that imported it."""
import logging
import os
import subprocess
import sys

from edgecsp import _quiet
from tests.gates import ROOT, needs


def _edgecsp(args, env=None, prelude=""):
    """``(returncode, stdout lines, stderr lines)`` of ``edgecsp ARGS`` in a fresh Python, with OpenCV's FFmpeg
    log variable as ``env`` gives it (unset by default, as a user's shell has it)."""
    environ = dict((k, v) for k, v in os.environ.items() if k not in dict(_quiet.OPENCV_ENVIRONMENT))
    environ.update(env or {})
    code = prelude + "import sys\nfrom edgecsp.cli import main\nsys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code] + [str(a) for a in args], cwd=ROOT, env=environ,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    return proc.returncode, proc.stdout.splitlines(), proc.stderr.splitlines()


def test_opencv_environment_keeps_what_the_user_set():
    environ = {}
    _quiet.quiet_opencv_environment(environ)
    assert environ == {"OPENCV_FFMPEG_LOGLEVEL": "-8"}
    environ = {"OPENCV_FFMPEG_LOGLEVEL": "32"}
    _quiet.quiet_opencv_environment(environ)
    assert environ == {"OPENCV_FFMPEG_LOGLEVEL": "32"}


def test_quiet_logger_restores_the_levels(capsys):
    logger = logging.getLogger("edgecsp-test-noisy")
    handler = logging.StreamHandler(sys.stdout)
    handler.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with _quiet.quiet_logger("edgecsp-test-noisy"):
            logger.info("hidden")
            logger.warning("hidden too")
        logger.info("shown")
    finally:
        logger.removeHandler(handler)
    assert capsys.readouterr().out.splitlines() == ["shown"]
    assert logger.level == logging.INFO and handler.level == logging.INFO


def test_dropped_root_warnings_drop_only_those_and_leave_no_handler(capfd):
    root = logging.getLogger()
    handlers, filters = list(root.handlers), list(root.filters)  # what earlier code in this process left there
    with _quiet.dropped_root_warnings("Please consider"):
        logging.warning("Please consider to run pre-processing")
    assert root.handlers == handlers and root.filters == filters  # no basicConfig handler left behind
    assert "Please consider" not in capfd.readouterr().err


def test_quiet_rich_console_silences_only_the_block(capsys):
    needs("nncf")  # rich comes with it, and NNCF is what draws on rich's console
    import rich

    print("before")
    with _quiet.quiet_rich_console():
        rich.get_console().print("a progress bar")
        print("a line of edgecsp")
    rich.get_console().print("after")
    assert capsys.readouterr().out.splitlines() == ["before", "a line of edgecsp", "after"]


def _truncated(video, folder):
    path = os.path.join(str(folder), "truncated.mp4")
    with open(video, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read(20000))  # no moov atom: FFmpeg logs it, OpenCV cannot open it
    return path


def test_a_video_opencv_cannot_open_fails_with_one_line(demo_onnx, demo_video, tmp_path):
    broken = _truncated(demo_video[0], tmp_path)
    args = ["infer", "--engine", demo_onnx, broken, "--save-json", str(tmp_path / "d.jsonl"), "--no-progress"]
    # the noise is there to hide: FFmpeg's own line when the user asks for its errors (OpenCV prints them)
    code, out, err = _edgecsp(args, env={"OPENCV_FFMPEG_LOGLEVEL": "16"})
    assert code == 3 and any("moov atom not found" in line for line in out + err), (out, err)
    code, out, err = _edgecsp(args)
    assert code == 3 and out == []
    assert len(err) == 1 and err[0].startswith("edgecsp infer: error: OpenCV cannot open"), err


def test_an_int8_cpu_build_prints_only_edgecsp_lines(demo_onnx, tmp_path):
    needs("openvino", "nncf")
    out_xml = str(tmp_path / "int8.xml")
    code, out, err = _edgecsp(["build", "--target", "cpu", "--precision", "int8", "--calib", "shapes:0",
                               "--count", "8", demo_onnx, "-o", out_xml])
    assert code == 0 and err == [], err
    assert out == ["wrote {}".format(out_xml)]  # no INFO:nncf lines, no progress bars


def test_an_int8_onnxruntime_build_without_sympy_prints_only_edgecsp_lines(demo_onnx, tmp_path):
    """ONNX Runtime's symbolic shape inference needs sympy, which its wheel does not require: the model is
    pre-processed without it, so ONNX Runtime has nothing to advise."""
    needs("onnx")
    import onnx

    out_onnx = str(tmp_path / "int8.onnx")
    code, out, err = _edgecsp(["build", "--target", "cpu-ort", "--precision", "int8", "--calib", "shapes:0",
                               "--count", "8", demo_onnx, "-o", out_onnx],
                              prelude="import sys\nsys.modules['sympy'] = None\n")
    assert code == 0 and err == [], err
    assert out == ["wrote {}".format(out_onnx)]
    keys = [p.key for p in onnx.load(out_onnx, load_external_data=False).metadata_props]
    assert "onnx.quant.pre_process" in keys  # pre-processed, not quantized as exported
