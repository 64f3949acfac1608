"""``CalibrationSet``: calibration images preprocessed exactly as inference preprocesses them.

Backend-independent: OpenVINO (NNCF), ONNX Runtime and the TensorRT calibrator all iterate the same float32
NCHW batches, made by ``edgecsp.runtime.preprocess.preprocess`` from the artefact's metadata. A calibration set
preprocessed differently from inference is a silent accuracy bug, so there is no other way to make them.
Python 3.6 compatible; numpy at import time, OpenCV on first use.
"""
from typing import Iterator, List

import numpy as np

from edgecsp.calibration.config import CalibrationConfig
from edgecsp.calibration.provenance import make_record, preprocessing_of
from edgecsp.calibration.sources import select_samples
from edgecsp.errors import InputError
from edgecsp.runtime.preprocess import preprocess
from edgecsp.validate import positive_int


class CalibrationSet(object):
    """The calibration batches for a model described by ``meta`` (a ModelMeta).

    Iterate it (as often as needed: NNCF and ORT make several passes) for float32 NCHW batches of
    ``batch_size`` images; a last partial batch is dropped, since static-batch engines cannot take it.
    ``len()`` is the number of batches, ``num_samples`` the number of images.
    """

    def __init__(self, config, meta, batch_size=1):
        # type: (CalibrationConfig, object, int) -> None
        config = config.checked()
        if not config.source:
            raise InputError("this calibration needs images: pass --calib SOURCE")
        batch_size = positive_int(batch_size, "calibration batch size")
        if config.count < batch_size:
            raise InputError("--count {} is smaller than the model's batch of {}: pass at least {}".format(
                config.count, batch_size, batch_size))
        self.config = config
        self.meta = meta
        self.batch_size = batch_size
        self.samples = select_samples(config.source, config.count, config.seed, config.every, config.images)

    @property
    def num_samples(self):
        # type: () -> int
        return len(self.samples.samples) // self.batch_size * self.batch_size

    def __len__(self):
        return len(self.samples.samples) // self.batch_size

    def frames(self):
        # type: () -> Iterator[np.ndarray]
        """The chosen images as BGR uint8, in the set's fixed order."""
        return self.samples.frames()

    def __iter__(self):
        # type: () -> Iterator[np.ndarray]
        pending = []  # type: List[np.ndarray]
        for frame in self.frames():
            pending.append(frame)
            if len(pending) == self.batch_size:
                yield preprocess(pending, self.meta)[0]
                pending = []

    def drop_unreadable(self):
        """Decode every chosen image file once and leave out, with a warning, those that cannot be decoded (the
        record counts them: ``describe()["skipped"]``); InputError when fewer than a batch remain. Video and
        synthetic sources are left as they are. Returns self."""
        if not self.samples.paths:
            return self
        self.samples = self.samples.readable()
        skipped = len(self.samples.skipped)
        if skipped and self.num_samples == 0:
            raise InputError("calibration source {}: {} of the {} chosen images cannot be decoded and fewer than a "
                             "batch of {} remain: remove or re-save them, or pass another source".format(
                                 self.config.source, skipped, skipped + len(self.samples.samples), self.batch_size))
        return self

    def verify(self):
        """Decode every chosen image once before a long calibration starts (``drop_unreadable`` for image files);
        InputError when a source gives fewer images than chosen."""
        if self.samples.paths:
            self.drop_unreadable()
            return self
        decoded = sum(1 for _ in self.frames())
        if decoded < self.num_samples:
            raise InputError("calibration source {} gave {} images, fewer than the {} chosen: check it".format(
                self.config.source, decoded, self.num_samples))
        return self

    def preprocessing(self):
        """The preprocessing parameters these batches were made with (part of the provenance)."""
        return preprocessing_of(self.meta)

    def fingerprint(self):
        # type: () -> str
        return self.samples.fingerprint()

    def provenance(self, model_sha256, algorithm, tools=None, cache=None):
        """The provenance record of a calibration of the model with ``model_sha256`` on this set.

        ``algorithm``: a dict naming the tool and method (``{"tool": "nncf", "method": "...", ...}``);
        ``tools``: extra {package: version}; ``cache``: ``{"file": ..., "sha256": ...}`` of a reusable result.
        """
        return make_record(self.samples.describe(), self.num_samples, self.meta, model_sha256, algorithm,
                           tools=tools, cache=cache)
