"""`edgecsp build --calib FOLDER` with an unreadable image in the folder: skipped with a warning, recorded."""
import os

import numpy as np
import pytest

from tests.gates import optional

cv2 = optional("cv2")

from edgecsp.calibration import provenance_path, read_record  # noqa: E402
from edgecsp.cli import main  # noqa: E402

pytestmark = [pytest.mark.opencv, pytest.mark.onnxruntime, pytest.mark.onnx]


def test_build_int8_skips_an_unreadable_calibration_image_and_records_it(tmp_path, capsys, caplog):
    from tests.backends.test_onnxruntime_backend import make_onnx

    model = str(tmp_path / "tiny.onnx")
    make_onnx(model)
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / "{}.png".format(i)), np.random.RandomState(i).randint(0, 255, (32, 32, 3)).astype(
            np.uint8))
    (folder / "1b.jpg").write_bytes(b"half a jpeg")
    out = str(tmp_path / "q.onnx")
    assert main(["build", "--target", "cpu-ort", "-p", "int8", model, "-o", out, "--calib", str(folder),
                 "--count", "4"]) == 0
    assert any("cannot decode image" in r.getMessage() and "1b.jpg" in r.getMessage() for r in caplog.records)
    record = read_record(provenance_path(out))
    assert record["samples"] == 3
    assert record["data"]["skipped"] == 1 and record["data"]["skipped_samples"] == ["1b.jpg"]
    assert os.path.isfile(out)
