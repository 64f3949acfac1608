"""What a calibrated (INT8) build is asked to do: the calibration data and the accuracy it must keep.

Plain records shared by ``edgecsp build``, the backends and their tests; Python 3.6 compatible.
"""
from typing import NamedTuple, Optional

from edgecsp.errors import InputError
from edgecsp.validate import choice, non_negative_int, number_in, optional, positive_int

DEFAULT_CALIB_COUNT = 300  # NNCF's default subset size: enough for stable activation ranges on CNN detectors
METRICS = ("map50", "map50_95")  # what --max-drop is measured on; points of mAP x 100
SOURCE_HELP = "a folder of images, a video, a COCO annotations .json, an image, or shapes:SEED (synthetic)"


class CalibrationConfig(NamedTuple):
    """Where the calibration images come from and how many of them are used.

    ``source``: a folder of images, a video (every ``every``-th frame), a COCO json (its ``file_name`` entries,
    relative to ``images`` or the json's folder), one image, or ``shapes:SEED`` (the synthetic generator).
    ``count`` images are drawn from the source with ``seed``; the whole source when it has exactly ``count``.
    ``cache``: the provenance record (``<artefact>.calibration.json``) of an earlier calibration whose result
    is reused instead of calibrating again; refused when its model or preprocessing differ from this build's.
    """

    source: Optional[str] = None
    count: int = DEFAULT_CALIB_COUNT
    seed: int = 0
    every: Optional[int] = None  # video: take every Nth frame; None spreads ``count`` frames over the video
    images: Optional[str] = None  # COCO json: the folder its file_names are relative to
    cache: Optional[str] = None

    def checked(self):
        """This config if its values are usable; InputError naming the option otherwise."""
        if not self.source and not self.cache:
            raise InputError("INT8 needs calibration data: pass --calib with " + SOURCE_HELP)
        positive_int(self.count, "--count")
        optional(positive_int, self.every, "--calib-every")
        non_negative_int(self.seed, "--seed")
        return self


class AccuracyControl(NamedTuple):
    """Validation data and the largest accuracy drop an INT8 build may cost.

    ``max_drop`` is in points of ``metric`` (mAP x 100, so 0.5 means 0.5 mAP points); None measures the
    drop and records it without enforcing a bound. ``data`` is a COCO annotations json, ``images`` the folder
    its file names are relative to (default: the json's folder). Keep it apart from the calibration data.
    ``validator``: what measures ``metric`` on that data for a runner (backends never import evaluation);
    ``edgecsp.build`` attaches ``edgecsp.evaluation.gate.DetectionValidation`` for it.
    """

    data: str
    max_drop: Optional[float] = None
    images: Optional[str] = None
    metric: str = "map50"
    validator: Optional[object] = None

    def checked(self):
        if not self.data:
            raise InputError("--max-drop needs validation data: pass --data annotations.json [--images DIR]")
        optional(number_in, self.max_drop, "--max-drop (in mAP points)", 0.0, 100.0)
        choice(self.metric, "the accuracy metric", METRICS)
        return self


# `edgecsp build` options (BuildConfig.options keys, the CLI flags without "--") that INT8 builds take
CALIBRATION_OPTIONS = ("calib", "calib_count", "calib_seed", "calib_every", "calib_cache")
ACCURACY_OPTIONS = ("max_drop", "val_data", "val_images", "val_metric", "validator")


def int8_options(options, accepted=CALIBRATION_OPTIONS + ACCURACY_OPTIONS):
    """``(CalibrationConfig or None, AccuracyControl or None)`` from build options such as ``{"calib": "shapes:0",
    "calib_count": 100, "max_drop": 0.5, "val_data": "val/annotations.json"}``; InputError for others."""
    options = dict((k, v) for k, v in dict(options or {}).items() if v is not None)
    strays = sorted(k for k in options if k not in accepted)
    if strays:
        raise InputError("unknown INT8 build option {}: the options are {}".format(
            ", ".join(strays), ", ".join(accepted)))
    calibration = None
    if any(k in options for k in CALIBRATION_OPTIONS):
        calibration = CalibrationConfig(source=options.get("calib"),
                                        count=options.get("calib_count", DEFAULT_CALIB_COUNT),
                                        seed=options.get("calib_seed", 0), every=options.get("calib_every"),
                                        cache=options.get("calib_cache"))
    accuracy = None
    if any(k in options for k in ACCURACY_OPTIONS):
        if "val_data" not in options:
            raise InputError("--max-drop and --images need validation data: pass --data annotations.json")
        accuracy = AccuracyControl(data=options["val_data"], max_drop=options.get("max_drop"),
                                   images=options.get("val_images"), metric=options.get("val_metric", "map50"),
                                   validator=options.get("validator"))
    return calibration, accuracy
