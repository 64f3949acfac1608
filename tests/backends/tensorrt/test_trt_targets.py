"""TensorRT target records, their resolution, the precision policy and the "can this machine build it" decision."""
import json
import os
import sys

import pytest

from edgecsp.backends import get_backend, list_backends
from edgecsp.backends.tensorrt.host.lint import matrix_for, matrix_key
from edgecsp.backends.tensorrt.policy import (OVERRIDE_FLAG, check_dla, check_precision_policy, device_mismatch,
                                              int8_refusal, sm_label)
from edgecsp.backends.tensorrt.versions import (closest_at_or_below, parse_version, version_in_range,
                                                version_number)
from edgecsp.cli import main
from edgecsp.errors import InputError, UnsupportedError
from edgecsp.targets import get_target, list_targets
from tests.gates import ROOT

# name: (JetPack, L4T, SM, Python, TensorRT, fast INT8, DLA cores) -- each fact on its own, from NVIDIA's specs.
# TensorRT 8.2.1 is JetPack 4.6.1+ (L4T r32.7.x); JetPack 4.6 itself (r32.6.1) has TensorRT 8.0.1.
JETSONS = {"tx2": ("4.6.1", "r32.7", "6.2", "3.6", "8.2", False, 0),
           "nano": ("4.6.1", "r32.7", "5.3", "3.6", "8.2", False, 0),
           "xavier-nx": ("5.1", "r35.2", "7.2", "3.8", "8.5", True, 2),
           "agx-xavier": ("5.1", "r35.2", "7.2", "3.8", "8.5", True, 2),
           "orin": ("6", "r36", "8.7", "3.10", "8.6", True, 2),
           "orin-nano": ("6", "r36", "8.7", "3.10", "8.6", True, 0),
           # AGX Orin / Orin NX on JetPack 5.1 (L4T r35.2.1): TensorRT 8.5.2, Python 3.8, as on the Xaviers
           "orin-jp5": ("5.1", "r35.2", "8.7", "3.8", "8.5", True, 2)}
# target -> docker/Dockerfile.<image> whose base image is that JetPack's (the L4T tag begins with the record's l4t)
IMAGES = {"tx2": "jetpack4", "nano": "jetpack4", "xavier-nx": "jetpack5", "agx-xavier": "jetpack5",
          "orin-jp5": "jetpack5", "orin": "jetpack6", "orin-nano": "jetpack6"}


@pytest.mark.parametrize("name", sorted(JETSONS))
def test_jetson_records_carry_the_issue_facts(name):
    jetpack, l4t, sm, python, trt, fast_int8, dla_cores = JETSONS[name]
    t = get_target(name)
    assert (t.backend, t.jetpack, t.l4t, t.sm, t.device_python, t.suffix) == (
        "tensorrt", jetpack, l4t, sm, python, ".engine")
    assert t.trt_version[0].startswith(trt) and t.fast_fp16 and t.default_precision == "fp16"
    assert (t.fast_int8, t.dla_cores) == (fast_int8, dla_cores)
    assert t.docker == IMAGES[name] and "int8" in t.precisions
    with open(os.path.join(ROOT, "docker", "Dockerfile." + t.docker)) as handle:
        base = [line.split()[1] for line in handle if line.startswith("FROM ")]
    assert base and base[0].rpartition(":")[2].startswith(l4t + "."), (name, base)
    assert t.max_opset == matrix_for(t)["max_opset"]


def test_x86_cuda_is_tensorrt_10_on_any_gpu():
    t = get_target("x86-cuda")
    assert t.trt_version[0].startswith("10.") and t.sm is None and t.fast_int8 and t.max_opset == 20


def test_every_tensorrt_target_resolves_to_its_matrix_and_backend():
    suffixes = dict((b.name, b.suffixes) for b in list_backends())
    for t in list_targets():
        if t.backend != "tensorrt":
            continue
        assert t.suffix in suffixes["tensorrt"]
        assert t.max_opset == matrix_for(t)["max_opset"], t.name  # the record and the encoded matrix agree
    assert [matrix_key(n) for n in ("tx2", "xavier-nx", "orin", "x86-cuda")] == ["8.2", "8.5", "8.6", "10.0"]
    backend = get_backend("tensorrt")
    for attr in ("is_available", "version", "Runner", "build", "read_meta", "write_bundle", "build_problem"):
        assert callable(getattr(backend, attr)), attr


def test_unknown_target_still_lists_every_record():
    with pytest.raises(UnsupportedError, match="unknown target 'tx1'.*tx2, nano, xavier-nx, agx-xavier, orin, "
                                               "orin-nano, orin-jp5, x86-cuda"):
        get_target("tx1")


def test_versions():
    assert parse_version("8.2.1.8") == (8, 2, 1, 8)
    assert version_in_range("8.2.1.8", "8.2.1", "8.2.1") and not version_in_range("8.2.3", "8.2.1", "8.2.1")
    assert version_in_range("10.3.0.30", "8.6.2", "10.3.x") and not version_in_range("10.4.0", "8.6.2", "10.3.x")
    assert version_in_range("10.7.0", "10.0.1", "10.x") and not version_in_range("8.6.1", "10.0.1", "10.x")
    assert (version_number("8.2.1.8"), version_number("8.5.2"), version_number("10.0.1")) == (8201, 8502, 100001)
    assert closest_at_or_below("8.5.2", ["8.2", "8.4", "8.6"]) == "8.4"
    assert closest_at_or_below("7.1.3", ["8.2"]) is None
    with pytest.raises(InputError, match="not a TensorRT version"):
        parse_version("eight")


@pytest.mark.parametrize("name", ["tx2", "nano"])
def test_int8_is_refused_without_fast_int8_with_reason_and_fp16_alternative(name):
    with pytest.raises(UnsupportedError) as err:
        check_precision_policy(name, "int8")
    message = str(err.value)
    assert "INT8 for {} is refused".format(name) in message
    assert "no fast INT8" in message and "--precision fp16" in message and OVERRIDE_FLAG in message
    assert message == int8_refusal(name)
    assert check_precision_policy(name, "int8", allow_slow_int8=True) == "int8"  # the explicit override
    assert check_precision_policy(name) == "fp16"


def test_int8_is_allowed_where_the_hardware_has_it():
    for name in ("xavier-nx", "agx-xavier", "orin", "x86-cuda"):
        assert check_precision_policy(name, "int8") == "int8"
    with pytest.raises(UnsupportedError, match="does not support precision 'bf16'"):
        check_precision_policy("orin", "bf16")


def test_dla_only_where_the_target_has_it():
    assert check_dla("xavier-nx", 1, "fp16") == 1 and check_dla("tx2", None, "fp16") is None
    with pytest.raises(UnsupportedError, match="target tx2 has no DLA cores.*xavier-nx, agx-xavier, orin"):
        check_dla("tx2", 0, "fp16")
    with pytest.raises(UnsupportedError, match="DLA runs FP16 or INT8 only"):
        check_dla("orin", 0, "fp32")
    # checked from above too: Xavier and AGX Orin have cores 0 and 1; Orin Nano has none
    for bad in (2, -1, "one"):
        with pytest.raises(UnsupportedError, match="target xavier-nx has 2 DLA cores: --dla-core must be 0 or 1"):
            check_dla("xavier-nx", bad, "fp16")
    with pytest.raises(UnsupportedError, match="target orin-nano has no DLA cores"):
        check_dla("orin-nano", 0, "fp16")


def test_device_mismatch_decides_where_the_engine_is_built():
    assert device_mismatch("tx2", "8.2.1.8", "6.2") is None
    assert device_mismatch("tx2", None, None) == "TensorRT is not installed on this machine (on a Jetson: sudo apt-get install python3-libnvinfer)"
    assert "TensorRT 8.5.2 (JetPack 5.1.x (L4T r35.2-r35.6)) but target tx2 runs TensorRT 8.2.1 (JetPack 4.6.1+, " \
        "L4T r32.7.x): use the target for this JetPack (xavier-nx, agx-xavier)" in device_mismatch("tx2", "8.5.2", "7.2")
    # JetPack 4.6 itself (TensorRT 8.0.1): a clear refusal with the upgrade, not an attempt
    old = device_mismatch("tx2", "8.0.1.6", "6.2")
    assert "TensorRT 8.0.1.6 (JetPack 4.6 (L4T r32.6.1))" in old and "upgrade to JetPack 4.6.1 or later" in old
    assert "edgecsp does not build for TensorRT 8.0" in old
    assert device_mismatch("nano", "8.2.1.8", "6.2") == "this GPU is sm_62 but target nano is sm_53"
    assert device_mismatch("tx2", "8.2.1.8", None) == "no CUDA GPU was found on this machine"
    # an Orin on JetPack 5.1 is pointed at orin-jp5 (same GPU), not at the Xaviers that share its TensorRT
    assert device_mismatch("orin-jp5", "8.5.2.2", "8.7") is None
    assert device_mismatch("orin", "8.5.2.2", "8.7").endswith("use the target for this JetPack (orin-jp5), or "
                                                              "upgrade the device to JetPack 6 or later")
    assert device_mismatch("orin-jp5", "10.3.0.30", "8.7").endswith("use the target for this JetPack (orin, "
                                                                    "orin-nano)")
    assert "(xavier-nx, agx-xavier, orin-jp5), or upgrade" in device_mismatch("orin", "8.5.2.2", None)  # GPU unknown
    assert device_mismatch("x86-cuda", "10.7.0", "8.9") is None  # any GPU
    assert "not a TensorRT target" in device_mismatch("cpu", "10.0.1", "8.9")
    assert sm_label("8.7") == "sm_87"


def test_this_machine_cannot_build_engines():
    # CI has neither TensorRT nor a GPU; the probe must say so instead of failing
    assert get_backend("tensorrt").build_problem("tx2") == "TensorRT is not installed on this machine (on a Jetson: sudo apt-get install python3-libnvinfer)"


def test_targets_command_prints_the_records(capsys):
    assert main(["targets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    tx2 = [line for line in lines if line.startswith("tx2 ")][0]
    for text in ("tensorrt", "fp16,fp32,int8", "8.2.1", "3.6", "sm_62 fp16", "4.6"):
        assert text in tx2
    assert "sm_72 fp16+int8+dla" in [line for line in lines if line.startswith("xavier-nx")][0]
    assert main(["targets", "--json"]) == 0
    records = dict((r["name"], r) for r in json.loads(capsys.readouterr().out))
    assert records["orin"]["sm"] == "8.7" and records["nano"]["jetpack"] == "4.6.1"


def test_probes_report_absence_instead_of_failing(monkeypatch):
    """The TensorRT probe, with TensorRT made absent and then present (a stand-in module): no guess about
    what this machine has."""
    import types

    from edgecsp.backends.tensorrt.device import build_problem, cuda_device, installed_trt_version

    backend = get_backend("tensorrt")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    assert not backend.is_available() and backend.version() is None and installed_trt_version() is None
    assert "TensorRT" in build_problem("tx2")
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.2.1.8"))
    assert backend.is_available() and backend.version() == installed_trt_version() == "8.2.1.8"
    gpu = cuda_device()
    if gpu is not None:  # a machine with NVIDIA's driver
        assert gpu.sm.count(".") == 1 and gpu.name
