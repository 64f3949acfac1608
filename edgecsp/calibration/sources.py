"""Calibration sources: which images a calibration uses, drawn reproducibly, and a fingerprint of them.

A spec is a folder of images, a COCO json (its image list), one image, a video (every Nth frame) or
``shapes:SEED`` (the synthetic generator of ``edgecsp.data``). ``select_samples`` resolves it to a
:class:`SampleList`: the chosen samples in a fixed order, each with a stable name and byte size, and a loader
that yields their BGR frames. Sampling is seeded: the same source, count and seed give the same samples.
Python 3.6 compatible; numpy at import time, OpenCV on first use.
"""
import hashlib
import json
import logging
import os
import re
from typing import Callable, Iterator, List, NamedTuple, Optional

import numpy as np

from edgecsp._lazy import require
from edgecsp.calibration.config import SOURCE_HELP
from edgecsp.data.coco import coco_file_names, resolve_image_paths
from edgecsp.errors import InputError
from edgecsp.runtime.sources import IMAGE_EXTENSIONS, list_images, read_image, videos_note

log = logging.getLogger(__name__)
_SHAPES = re.compile(r"^shapes(?::(\d+))?$")
SHAPES_VERSION = 1  # bump when edgecsp.data.shapes renders different pixels for the same seed


class Sample(NamedTuple):
    name: str  # stable identity: path relative to the source, "clip.mp4#120", "shapes-v1:0/17"
    size: int  # bytes on disk (the video's size for its frames, 0 for synthetic images)


class SampleList(NamedTuple):
    """The samples a calibration uses and how to read them; ``frames()`` yields BGR uint8 images in order."""

    kind: str  # "folder" | "coco" | "image" | "video" | "shapes"
    source: str
    samples: List[Sample]
    available: int  # how many candidates the source had (synthetic sources: len(samples))
    settings: dict  # what else decided the selection: seed, every...
    frames: Callable[[], Iterator[np.ndarray]]
    paths: tuple = ()  # the file of each sample (folder, coco, image kinds): what ``readable()`` checks
    skipped: tuple = ()  # names of chosen samples left out because they could not be decoded

    def readable(self):
        """This list without the chosen images that cannot be decoded, each named in a warning and recorded in
        ``skipped`` (``describe()`` counts them); decodes every chosen image once. The same list for video and
        synthetic sources, whose frames are checked as they are read."""
        bad = []
        for sample, path in zip(self.samples, self.paths):
            try:
                read_image(path)
            except InputError as exc:
                log.warning("calibration: skipping %s", exc)
                bad.append(sample.name)
        if not bad:
            return self
        keep = [i for i, sample in enumerate(self.samples) if sample.name not in bad]
        paths = tuple(self.paths[i] for i in keep)
        return self._replace(samples=[self.samples[i] for i in keep], paths=paths, frames=_reader(paths),
                             skipped=tuple(self.skipped) + tuple(bad))

    def fingerprint(self):
        """sha256 of the kind and the sorted (name, size) list of the chosen samples: the same images give the
        same fingerprint whatever seed chose them; a renamed, added or resized file changes it."""
        entries = sorted([s.name, s.size] for s in self.samples)
        text = json.dumps({"kind": self.kind, "samples": entries}, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def describe(self):
        """The provenance entry for this data (no absolute paths beyond ``source``)."""
        described = {"kind": self.kind, "source": self.source, "fingerprint": self.fingerprint(),
                     "samples": len(self.samples), "available": self.available,
                     "bytes": int(sum(s.size for s in self.samples)), "settings": dict(self.settings),
                     "skipped": len(self.skipped)}
        if self.skipped:
            described["skipped_samples"] = list(self.skipped)  # chosen, but undecodable: not in the fingerprint
        return described


def choose(available, count, seed):
    """Sorted indices of ``count`` of ``available`` candidates drawn with ``seed`` (all when equal)."""
    if count >= available:
        return list(range(available))
    # RandomState, not default_rng: this runs on the device, where JetPack 4.6.x gives numpy 1.13
    rng = np.random.RandomState(int(seed))
    return sorted(int(i) for i in rng.choice(available, size=int(count), replace=False))


def _too_few(spec, available, count, what):
    return InputError("calibration source {} has {} {}, fewer than --count {}: add {} or pass "
                      "--count {}".format(spec, available, what, count, what, available))


def select_samples(spec, count, seed=0, every=None, images_dir=None):
    # type: (str, int, int, Optional[int], Optional[str]) -> SampleList
    """Resolve the calibration source ``spec`` to ``count`` samples; InputError for empty, unreadable or short
    sources (decoding happens later, in ``frames()``)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("no calibration source given: pass --calib with " + SOURCE_HELP)
    spec = spec.strip()
    match = _SHAPES.match(spec)
    if match:
        return _shapes(spec, int(match.group(1) or 0), count)
    path = os.path.expanduser(spec)
    if not os.path.exists(path):
        raise InputError("calibration source {} does not exist: pass {}".format(spec, SOURCE_HELP))
    if os.path.isdir(path):
        paths = list_images(path)
        videos = videos_note(path)
        if not paths:
            raise InputError("calibration folder {} contains no images ({}){}: add images or pass another "
                             "source".format(spec, ", ".join("*" + e for e in IMAGE_EXTENSIONS),
                                             ", only " + videos if videos else ""))
        if videos:
            log.warning("calibration folder %s: drawing from its %d images, not its %s: pass a video as --calib "
                        "of its own", spec, len(paths), videos)
        return _files("folder", spec, path, paths, count, seed)
    if os.path.getsize(path) == 0:
        raise InputError("calibration source {} is an empty file: pass {}".format(spec, SOURCE_HELP))
    extension = os.path.splitext(path)[1].lower()
    if extension == ".json":
        folder = images_dir or os.path.dirname(os.path.abspath(path))
        paths = resolve_image_paths(coco_file_names(path), folder, spec, None)
        return _files("coco", spec, folder, paths, count, seed)
    if extension in IMAGE_EXTENSIONS:
        return _files("image", spec, os.path.dirname(os.path.abspath(path)), [path], count, seed)
    return _video(spec, path, count, seed, every)


def _files(kind, spec, root, paths, count, seed):
    if len(paths) < count:
        raise _too_few(spec, len(paths), count, "images")
    chosen = [paths[i] for i in choose(len(paths), count, seed)]
    samples = [Sample(os.path.relpath(os.path.abspath(p), os.path.abspath(root)).replace(os.sep, "/"),
                      int(os.path.getsize(p))) for p in chosen]

    return SampleList(kind, spec, samples, len(paths), {"seed": int(seed), "count": int(count)}, _reader(chosen),
                      tuple(chosen))


def _reader(paths):
    """``frames()`` of image files: each decoded in order; one that cannot be is skipped with a warning (a
    CalibrationSet drops it from its samples in ``verify()``, before any pass)."""
    paths = list(paths)

    def frames():
        for p in paths:
            try:
                image = read_image(p)
            except InputError as exc:
                log.warning("calibration: skipping %s", exc)
                continue
            yield image

    return frames


def _shapes(spec, shapes_seed, count):
    if not hasattr(np.random, "default_rng"):
        raise InputError("calibration source {} renders synthetic images with numpy >= 1.17 (this is {}): pass a "
                         "folder of images, or pip3 install numpy==1.19.5".format(spec, np.__version__))
    from edgecsp.data.shapes import dataset_sample

    def frames():
        for index in range(count):
            yield dataset_sample(shapes_seed, index)[0]

    samples = [Sample("shapes-v{}:{}/{}".format(SHAPES_VERSION, shapes_seed, i), 0) for i in range(count)]
    return SampleList("shapes", spec, samples, count, {"shapes_seed": shapes_seed, "generator": SHAPES_VERSION},
                      frames)


def _video(spec, path, count, seed, every):
    cv2 = require("cv2", "reading calibration videos")
    capture = cv2.VideoCapture(path)
    try:
        length = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        readable = capture.isOpened() and capture.read()[0]
    finally:
        capture.release()
    if not readable or length < 1:
        raise InputError("calibration source {} is not a readable video, image, folder or COCO json: pass {} "
                         "(re-encode videos with ffmpeg -i IN -c:v libx264 OUT.mp4)".format(spec, SOURCE_HELP))
    step = int(every) if every else max(1, length // count)
    candidates = list(range(0, length, step))
    if len(candidates) < count:
        raise InputError("calibration video {} has {} frames, {} at every {}th frame, fewer than --count {}: "
                         "pass a smaller --calib-every or --count".format(spec, length, len(candidates), step,
                                                                                count))
    indices = [candidates[i] for i in choose(len(candidates), count, seed)]
    size = int(os.path.getsize(path))
    samples = [Sample("{}#{}".format(os.path.basename(path), i), size) for i in indices]

    def frames():
        wanted = set(indices)
        capture = cv2.VideoCapture(path)
        index, found = 0, 0
        try:
            while found < len(indices):
                ok, frame = capture.read()
                if not ok:
                    raise InputError("calibration video {} ended after {} frames, before frame {} that calibration "
                                     "needs (its container reports {}): re-encode it or pass --calib-every".format(
                                         spec, index, sorted(wanted)[found], length))
                if index in wanted:
                    found += 1
                    yield frame
                index += 1
        finally:
            capture.release()

    return SampleList("video", spec, samples, len(candidates), {"seed": int(seed), "every": step,
                                                               "count": int(count)}, frames)
