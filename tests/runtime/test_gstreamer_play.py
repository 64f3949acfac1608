"""The --gst pipelines played for real, through edgecsp's GstSource under Debian's GStreamer-enabled OpenCV.

pip's OpenCV has no GStreamer, so each play runs in a subprocess of Debian's /usr/bin/python3 (python3-opencv,
numpy 1.24) with this checkout on PYTHONPATH. The Jetson elements are swapped for software ones by
``software_pipeline`` (the one place that knows the stand-ins: ``SOFTWARE_STANDINS``): avdec_h264/avdec_h265 for
nvv4l2decoder, videoconvert + videoscale (+ videoflip) for nvvidconv, a live videotestsrc for nvarguscamerasrc.
Everything else runs as a Jetson would run it: filesrc, the demuxers, parsers, rtspsrc with its depayloaders
against a local gst-rtsp-server, the BGR caps and the appsink options. Frames carry their number in 8 black/white
stripes (top half) over a blue-heavy colour (bottom half), so order, losses and swapped channels all show.
"""
import json
import os
import re
import subprocess

import numpy as np
import pytest

from tests.gates import GST_PYTHON, ROOT, needs_import

pytestmark = pytest.mark.gstreamer

FRAMES, FPS, WIDTH, HEIGHT = 24, 24, 320, 240
COLOR = (200, 120, 40)  # BGR: swapped R and B cannot pass for it
OPENCV_WARNING = re.compile(r"GStreamer (warning|Plugin):")

# Runs under GST_PYTHON: for each job, opens a source as `edgecsp infer --gst` does (software=True) or a pipeline as
# given, and describes each frame; prints the results as one JSON line.
PLAY = r"""
import json
import sys

from edgecsp.errors import EdgeCSPError
from edgecsp.runtime.gstreamer import GstSource, open_gst_source


def play(job):
    result = {"frames": []}
    try:
        if job.get("pipeline"):
            source = GstSource(job["pipeline"], "a pipeline")
        else:
            source = open_gst_source(job["spec"], software=True, **job["options"])
        with source:
            result.update(kind=source.kind, name=source.name, fps=source.fps, length=source.length)
            for frame in source:
                image = frame.image_bgr
                height, width = image.shape[:2]
                top = image[:height // 2, :width // 8 * 8].reshape(height // 2, 8, width // 8, 3)
                result["frames"].append({
                    "index": frame.index, "name": frame.name, "shape": list(image.shape), "dtype": str(image.dtype),
                    "stripes": top.mean(axis=(0, 2, 3)).tolist(),
                    "bottom": image[height * 3 // 4:].reshape(-1, 3).mean(axis=0).tolist(),
                    "pixels": image.tolist() if job.get("pixels") else None})
                if len(result["frames"]) >= (job["limit"] or 10 ** 6):
                    break
    except EdgeCSPError as exc:
        result["error"] = str(exc)
    return result


print(json.dumps([play(job) for job in json.loads(sys.argv[1])]))
"""

# Runs under GST_PYTHON: a local RTSP server (gst-rtsp-server) for one H.264 MP4 at /clip, user viewer:s3cret.
RTSP_SERVER = r"""
import sys

import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service("0")
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch("( filesrc location={} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
                   .format(sys.argv[1]))
factory.add_role_from_structure(Gst.Structure.new_from_string(
    "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
token = GstRtspServer.RTSPToken()
token.set_string("media.factory.role", "viewer")
auth = GstRtspServer.RTSPAuth()
auth.add_basic(GstRtspServer.RTSPAuth.make_basic("viewer", "s3cret"), token)
server.set_auth(auth)
server.get_mount_points().add_factory("/clip", factory)
server.attach(None)
print(server.get_bound_port(), flush=True)
GLib.MainLoop().run()
"""


def _env():
    return dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1")


def play_all(jobs, timeout=60):
    """Each job (``play``'s arguments as a dict) played in one GST_PYTHON process; the stderr is the process's."""
    jobs = [dict(spec=job.get("spec"), pipeline=job.get("pipeline"), pixels=job.get("pixels", False),
                 limit=job.get("limit"), options=job.get("options", {})) for job in jobs]
    proc = subprocess.run([GST_PYTHON, "-c", PLAY, json.dumps(jobs)], env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.splitlines()[-1])
    for result in results:
        result["stderr"] = proc.stderr
    return results


def play(spec=None, pipeline=None, limit=None, pixels=False, timeout=60, **options):
    """What GstSource reads from ``spec`` (software stand-ins) or from ``pipeline`` (as given), under GST_PYTHON."""
    return play_all([dict(spec=spec, pipeline=pipeline, limit=limit, pixels=pixels, options=options)], timeout)[0]


def frame_image(number):
    """Frame ``number``: its bits as 8 white/black stripes over the top half, COLOR below."""
    image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    image[:] = COLOR
    for bit in range(8):
        image[:HEIGHT // 2, bit * WIDTH // 8:(bit + 1) * WIDTH // 8] = 255 if number >> bit & 1 else 0
    return image


def frame_number(frame):
    assert all(level < 60 or level > 195 for level in frame["stripes"]), frame["stripes"]  # black or white
    return sum(1 << bit for bit, level in enumerate(frame["stripes"]) if level > 128)


def assert_frames_in_order_as_bgr(frames, width=WIDTH, height=HEIGHT):
    for frame in frames:
        assert frame["shape"] == [height, width, 3] and frame["dtype"] == "uint8"
        assert np.abs(np.subtract(frame["bottom"], COLOR)).max() < 8, frame["bottom"]  # BGR, not RGB
    numbers = [frame_number(frame) for frame in frames]
    assert numbers == sorted(set(numbers)), numbers  # in order, none twice
    assert [frame["index"] for frame in frames] == list(range(len(frames)))


def write_video(path, codec="h264"):
    """FRAMES frames at FPS: an .mp4 by edgecsp's own H.264 writer (what `infer --save` writes), others by PyAV."""
    av = needs_import("av")
    if path.endswith(".mp4"):
        from edgecsp.runtime.h264 import H264Writer

        writer = H264Writer(path, fps=FPS)
        for number in range(FRAMES):
            writer.write(frame_image(number))
        writer.close()
        return path
    container = av.open(path, "w")
    stream = container.add_stream({"h264": "libx264", "h265": "libx265"}[codec], rate=FPS)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    stream.options = {"x265-params": "log-level=error"} if codec == "h265" else {}
    for number in range(FRAMES):
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame_image(number), format="bgr24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(str(tmp_path_factory.mktemp("gst") / "clip.mp4"))


# one container per demuxer of DEMUXERS (qtdemux, matroskademux, tsdemux, avidemux), both codecs
@pytest.mark.parametrize("ext, codec", [(".mp4", "h264"), (".mkv", "h265"), (".ts", "h264"), (".avi", "h264"),
                                        (".mov", "h265")])
def test_a_video_file_plays_every_frame_in_order_as_bgr(tmp_path, ext, codec):
    path = write_video(str(tmp_path / ("clip" + ext)), codec)
    result = play(path, codec=codec)
    assert "error" not in result, result["error"]
    assert len(result["frames"]) == FRAMES  # none lost at the start or at the end of stream, none added
    assert_frames_in_order_as_bgr(result["frames"])
    assert [frame_number(frame) for frame in result["frames"]] == list(range(FRAMES))
    assert result["kind"] == "gstreamer" and result["name"] == path and result["length"] is None
    assert abs(result["fps"] - FPS) <= 1  # from the caps (qtdemux estimates 23 for this short clip)
    assert not OPENCV_WARNING.search(result["stderr"]), result["stderr"]  # OpenCV's routine warnings dropped


def test_a_video_file_is_scaled_by_the_converter(clip):
    result = play(clip, width=160, height=120)
    assert len(result["frames"]) == FRAMES
    assert_frames_in_order_as_bgr(result["frames"], 160, 120)


# nvvidconv's flip-methods by their names, as numpy turns the unflipped frame (np.rot90 turns counterclockwise)
FLIPS = {1: lambda a: np.rot90(a, 1), 2: lambda a: np.rot90(a, 2), 3: lambda a: np.rot90(a, 3),
         4: lambda a: a[:, ::-1], 5: lambda a: np.rot90(a, 2).transpose(1, 0, 2), 6: lambda a: a[::-1],
         7: lambda a: a.transpose(1, 0, 2)}


def test_the_camera_pipeline_is_live_at_its_size_and_turns_by_flip_method():
    # nvarguscamerasrc -> a live videotestsrc: the caps, nvvidconv's conversion and the appsink options are real
    frames = {}
    options = dict(width=64, height=48, fps=30)
    jobs = [dict(spec="csi://0", limit=2, pixels=True, options=dict(options, flip=flip)) for flip in range(8)]
    for flip, result in enumerate(play_all(jobs)):
        assert "error" not in result, result["error"]
        assert len(result["frames"]) == 2 and result["fps"] == 30 and result["name"] == "csi://0"
        frames[flip] = np.array(result["frames"][0]["pixels"], np.int16)
    assert frames[0].shape == (48, 64, 3)
    for flip, turn in FLIPS.items():  # the same picture turned (chroma rounding aside), not another turn of it
        assert frames[flip].shape == turn(frames[0]).shape, flip
        assert np.abs(frames[flip] - turn(frames[0])).mean() < 1, flip


def test_a_raw_pipeline_ends_at_end_of_stream():
    result = play("videotestsrc num-buffers=7 ! video/x-raw, width=96, height=64 ! videoconvert ! "
                  "video/x-raw, format=BGR ! appsink")
    assert [frame["shape"] for frame in result["frames"]] == [[64, 96, 3]] * 7
    assert result["name"] == "gstreamer pipeline"


@pytest.fixture(scope="module")
def rtsp_port(clip):
    server = subprocess.Popen([GST_PYTHON, "-c", RTSP_SERVER, clip], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True)
    try:
        port = server.stdout.readline().strip()
        assert port.isdigit(), server.stderr.read() if server.poll() is not None else port
        yield int(port)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_an_rtsp_stream_with_credentials_plays_until_the_server_ends_it(rtsp_port):
    url = "rtsp://viewer:s3cret@127.0.0.1:{}/clip".format(rtsp_port)
    result = play(url, latency=0, timeout=60)  # returns only if the end of the served file ends the iteration
    assert "error" not in result, result["error"]
    # a live appsink (drop=true max-buffers=1) may drop a frame under load; the order never changes
    assert FRAMES // 2 <= len(result["frames"]) <= FRAMES
    assert_frames_in_order_as_bgr(result["frames"])
    assert result["name"] == "rtsp://***@127.0.0.1:{}/clip".format(rtsp_port)
    assert all(frame["name"] == result["name"] for frame in result["frames"])  # no password in the JSON lines


def test_a_pipeline_that_cannot_start_says_why_in_one_line(tmp_path, rtsp_port):
    url = "rtsp://viewer:wrong@127.0.0.1:{}/clip".format(rtsp_port)
    h265 = write_video(str(tmp_path / "clip.mkv"), "h265")
    could_not = "^OpenCV could not start the GStreamer pipeline for .*"
    cases = [(str(tmp_path / "missing.mp4"), {}, could_not + r"\(module filesrc\d+ reported: Resource not found\.\)"),
             (url, {"latency": 0}, could_not + r"\(module rtspsrc\d+ reported: Unauthorized\)"),
             (h265, {"codec": "h264"}, could_not + r"\(module matroskademux\d+ reported: Internal data stream "
                                                  r"error\.\).*--gst-codec h264\|h265"),
             ("videotestsrc num-buffers=0 ! videoconvert ! video/x-raw, format=BGR ! appsink", {},
              "^the GStreamer pipeline for gstreamer pipeline started but delivered no frame: ")]
    results = play_all([dict(spec=spec, options=options) for spec, options, _ in cases])
    for (spec, options, expected), result in zip(cases, results):
        error = result.get("error", "")
        assert re.search(expected, error) and "\n" not in error and "wrong" not in error, (spec, error)
    assert not OPENCV_WARNING.search(results[0]["stderr"]), results[0]["stderr"]  # the reasons moved into the errors


def test_a_jetson_pipeline_here_is_refused_at_once_instead_of_waiting_forever():
    # as given (no stand-ins), OpenCV would start the CSI pipeline without its source and wait for a first frame
    from edgecsp.runtime.gstreamer import csi_pipeline

    result = play(pipeline=csi_pipeline(0), timeout=30)
    assert result["error"].startswith("cannot start the GStreamer pipeline for a pipeline: this machine's GStreamer "
                                      "has no nvarguscamerasrc, nvvidconv: install JetPack's nvidia-l4t-gstreamer")

