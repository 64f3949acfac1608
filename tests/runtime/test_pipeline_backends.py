"""The pipeline on the real backends: same detections as the synchronous loop, requests in flight, CLI options."""
import os

import numpy as np
import pytest

from edgecsp.runtime.runner import BaseRunner
from edgecsp.build import BuildConfig, build
from edgecsp.cli import main
from edgecsp.errors import InputError
from tests.gates import host_targets, needs, needs_import


@pytest.fixture(scope="module", params=[t.name for t in host_targets()])
def engine(request, demo_onnx, tmp_path_factory):
    """The demo model built for every target that builds here (one per CPU backend)."""
    from edgecsp.targets import get_target

    target = get_target(request.param)
    needs(target.backend)
    out = str(tmp_path_factory.mktemp("engine") / ("demo" + target.suffix))
    return build(BuildConfig(demo_onnx, target=target.name, precision="fp32", output=out,
                             options={"input_form": "float"}))  # the float path; uint8 is test_uint8_input.py's


def _read(path):
    with open(path) as f:
        return f.read()


def test_pipelined_detections_equal_sync_ones(engine, demo_video, tmp_path):
    video, _ = demo_video
    sync, piped = str(tmp_path / "sync.jsonl"), str(tmp_path / "piped.jsonl")
    assert main(["infer", "--engine", engine, video, "--save-json", sync, "--sync", "--no-progress"]) == 0
    assert main(["infer", "--engine", engine, video, "--save-json", piped, "--in-flight", "3", "--no-progress"]) == 0
    text = _read(sync)
    assert text.count("\n") == 60 and '"detections": [{' in text
    assert _read(piped) == text  # same detections, same frame order
    streams = str(tmp_path / "s.jsonl")
    assert main(["infer", "--engine", engine, video, "--streams", "2", "--save-json", streams, "--no-progress"]) == 0
    assert _read(str(tmp_path / "s-0.jsonl")) == text and _read(str(tmp_path / "s-1.jsonl")) == text


def test_requests_in_flight_give_infer_results_in_any_order(engine):
    from edgecsp.backends import open_runner

    rng = np.random.RandomState(0)
    batches = [rng.rand(1, 3, 256, 256).astype(np.float32) for _ in range(5)]
    with open_runner(engine) as runner:
        assert runner.in_flight == 1
        expected = [runner.infer(b) for b in batches]
    runner = open_runner(engine).set_in_flight(3)
    with runner:
        assert runner.in_flight == 3
        with pytest.raises(RuntimeError, match="before entering"):
            runner.set_in_flight(2)
        handles = [runner.submit(b) for b in batches]
        for handle, want in reversed(list(zip(handles, expected))):
            for got, ref in zip(handle.result(), want):
                np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
        runner.wait_all()
    with pytest.raises(InputError, match="positive integer"):
        open_runner(engine).set_in_flight(0)


class _SyncOnly(BaseRunner):
    """A backend that implements only the synchronous interface (as the TensorRT runner may)."""

    def _activate(self):
        from edgecsp.runtime.layouts.yolo_raw import HeadMeta, yolo_meta

        meta = yolo_meta(names=["a"], input_size=(8, 8), heads=[HeadMeta(stride=8, anchors=[(8.0, 8.0)])])
        self._bind(meta, "images", (1, 3, 8, 8), ["out"])

    def _deactivate(self):
        pass

    def _infer(self, batch):
        return [batch.sum(axis=(1, 2, 3))]


def test_base_runner_runs_submit_synchronously(tmp_path):
    path = str(tmp_path / "model.bin")
    open(path, "wb").close()
    with _SyncOnly(path).set_in_flight(4) as runner:
        assert runner.in_flight == 1
        handle = runner.submit(np.ones((1, 3, 8, 8), np.float32))
        assert handle.done() and handle.result()[0].tolist() == [192.0]
        runner.wait_all()
        with pytest.raises(InputError, match="width 4 != 8"):
            runner.submit(np.ones((1, 3, 8, 4), np.float32))


def test_an_unreadable_image_is_skipped_and_none_readable_leaves_no_output(demo_onnx, tmp_path, capsys, caplog):
    cv2 = needs_import("cv2")
    folder = tmp_path / "images"
    folder.mkdir()
    image = np.full((64, 96, 3), 90, np.uint8)
    for i in range(12):
        cv2.imwrite(str(folder / "f{:02d}.png".format(i)), image)
    (folder / "f07.png").write_bytes(b"not a png")
    out = str(tmp_path / "d.jsonl")
    assert main(["infer", "--engine", demo_onnx, str(folder), "--save-json", out, "--no-progress"]) == 0
    assert "skipped 1 unreadable image(s)" in capsys.readouterr().out
    assert any("cannot decode image" in r.getMessage() and "f07.png" in r.getMessage() for r in caplog.records)
    assert len(open(out).read().splitlines()) == 11
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(2):
        (broken / "b{}.png".format(i)).write_bytes(b"not a png")
    out = str(tmp_path / "none.jsonl")
    assert main(["infer", "--engine", demo_onnx, str(broken), "--save-json", out, "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "none of the 2 images" in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(out) and not [n for n in os.listdir(str(tmp_path)) if "partial" in n]


def test_infer_option_errors(demo_onnx, demo_video, capsys):
    video, _ = demo_video
    assert main(["infer", "--engine", demo_onnx, video, "--sync", "--in-flight", "2"]) == 3
    assert main(["infer", "--engine", demo_onnx, video, video, "--streams", "1"]) == 3
    assert "fewer than the 2 sources" in capsys.readouterr().err
