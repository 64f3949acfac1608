"""INT8 calibration, independent of any backend: sources, seeded sampling, preprocessing and provenance.

``CalibrationSet(CalibrationConfig(source, count, seed), meta)`` yields the float32 NCHW batches every backend
calibrates on (made by the runtime's one ``preprocess``); ``provenance_path`` / ``reusable_cache`` write and
guard the record that goes next to each calibrated artefact.
"""
from edgecsp.calibration.config import DEFAULT_CALIB_COUNT, AccuracyControl, CalibrationConfig
from edgecsp.calibration.dataset import CalibrationSet
from edgecsp.calibration.provenance import (check_reuse, file_digest, preprocessing_of, provenance_path,
                                            read_record, reusable_cache, tool_versions)
from edgecsp.calibration.sources import SampleList, select_samples

__all__ = ["AccuracyControl", "CalibrationConfig", "CalibrationSet", "DEFAULT_CALIB_COUNT", "SampleList",
           "check_reuse", "file_digest", "preprocessing_of", "provenance_path", "read_record", "reusable_cache",
           "select_samples", "tool_versions"]
