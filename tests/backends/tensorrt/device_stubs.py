"""A Jetson's TensorRT side for a subprocess: the strict stand-ins importable as ``tensorrt`` and ``pycuda``, a
fake CUDA driver (``libcuda.so.1``), and a fake ``trtexec``.

``write_device(folder, io)`` writes, under ``folder``:

* ``site/``: put it on PYTHONPATH. ``tensorrt`` is ``standins.FakeTensorRT`` of one version (8.2: JetPack 4.6's)
  and ``pycuda.driver`` is ``standins.FakeCuda`` over the same fake device memory, built from a verbatim copy of
  standins.py and the recorded surfaces (``_edgecsp_standins``): every name and keyword the device code uses is
  checked against that version's real bindings, as in-process. Every call is logged, and the log is written to
  ``calls-<pid>.json`` in ``folder`` when the process exits, so a test sees which TensorRT and pycuda calls a
  command made.
* ``lib/libcuda.so.1``: put it on LD_LIBRARY_PATH. A C stand-in for the four CUDA driver entry points edgecsp's
  GPU probe calls through ctypes (``device.cuda_device``: cuInit, cuDeviceGet, cuDeviceGetAttribute,
  cuDeviceGetName), answering with the given GPU: the probe itself runs, arguments and all.
* ``bin/trtexec``: writes the fake engine to ``--saveEngine`` after checking that ``--onnx`` (and ``--calib``)
  exist, as trtexec would fail without them.

Needs a C compiler (``cc``); ``compiler()`` says whether there is one. The files need nothing but Python 3.6 and
numpy where they run.
"""
import json
import os
import shutil
import subprocess
import sys

from tests.backends.tensorrt import standins

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "_edgecsp_standins"

_LOADED = '''"""The one fake device of this process (written by tests/backends/tensorrt/device_stubs.py)."""
import atexit
import json
import os

from _edgecsp_standins import FakeCuda, FakeTensorRT, load_surface

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "device.json")) as _handle:
    CONFIG = json.load(_handle)
IO = [(t[0], bool(t[1]), tuple(t[2])) + tuple(t[3:]) for t in CONFIG["io"]]
TRT = FakeTensorRT(CONFIG["version"], IO, layers=[(n, list(o)) for n, o in CONFIG["layers"]],
                   plan=CONFIG["plan"].encode("ascii"), max_batch=CONFIG["max_batch"])
CUDA = FakeCuda(load_surface(CONFIG["pycuda"]), TRT.memory)
TENSORRT = TRT.module()
DRIVER = CUDA.module()


def _write_calls():
    calls = [[cls, member, [repr(a)[:300] for a in args]] for cls, member, args, _ in TRT.calls + CUDA.calls]
    with open(os.path.join(CONFIG["log_folder"], "calls-{}.json".format(os.getpid())), "w") as handle:
        json.dump(calls, handle)


atexit.register(_write_calls)
'''

_REPLACE = '''import sys

from _edgecsp_standins.device import {name}

sys.modules[__name__] = {name}  # `import {module}` gives the stand-in
'''

_TRTEXEC = '''#!{python}
"""A stand-in for trtexec: writes the fake engine to --saveEngine (written by device_stubs.py)."""
import os
import sys

sys.path.insert(0, {site!r})
from _edgecsp_standins.device import TRT

args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
for flag in ("--onnx", "--calib"):
    if flag in args and not os.path.isfile(args[flag]):
        sys.exit("trtexec: cannot read {{}}".format(args[flag]))
with open(args["--saveEngine"], "wb") as handle:
    handle.write(TRT.plan)
print("&&&& PASSED TensorRT.trtexec [TensorRT v{version}] # " + " ".join(sys.argv))
'''

_LIBCUDA = r'''/* The CUDA driver calls of edgecsp.backends.tensorrt.device.cuda_device, answering for one GPU. */
#include <string.h>

#define CUDA_SUCCESS 0
#define CUDA_ERROR_INVALID_VALUE 1
#define CUDA_ERROR_INVALID_DEVICE 101

int cuInit(unsigned int flags) { return flags == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE; }

int cuDeviceGet(int *device, int ordinal) {
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
}

int cuDeviceGetAttribute(int *value, int attribute, int device) {
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (attribute == 75) { *value = SM_MAJOR; return CUDA_SUCCESS; }  /* COMPUTE_CAPABILITY_MAJOR */
    if (attribute == 76) { *value = SM_MINOR; return CUDA_SUCCESS; }  /* COMPUTE_CAPABILITY_MINOR */
    return CUDA_ERROR_INVALID_VALUE;
}

int cuDeviceGetName(char *name, int length, int device) {
    if (device != 0 || length < 1) return CUDA_ERROR_INVALID_VALUE;
    strncpy(name, GPU_NAME, length - 1);
    name[length - 1] = 0;
    return CUDA_SUCCESS;
}
'''


def compiler():
    """The C compiler the fake driver is built with, or None."""
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def _write(path, text, mode=None):
    with open(path, "w") as handle:
        handle.write(text)
    if mode:
        os.chmod(path, mode)


def write_device(folder, io, version="8.2", gpu=("NVIDIA Tegra X2", "6.2"), layers=(), max_batch=1,
                 python=None):
    """Write the stand-in device into ``folder`` (see the module docstring); returns the environment variables a
    subprocess needs (PYTHONPATH, LD_LIBRARY_PATH) and ``TRTEXEC``, the fake trtexec's path. ``io`` is
    ``standins.FakeTensorRT``'s (name, is_input, shape[, DataType]); ``python`` runs the fake trtexec."""
    folder = os.path.abspath(str(folder))
    site, lib, bin_ = (os.path.join(folder, name) for name in ("site", "lib", "bin"))
    package = os.path.join(site, PACKAGE)
    for path in (os.path.join(package, "surfaces"), os.path.join(site, "tensorrt"), os.path.join(site, "pycuda"),
                 lib, bin_):
        os.makedirs(path)
    shutil.copyfile(os.path.join(HERE, "standins.py"), os.path.join(package, "__init__.py"))
    surfaces = [standins.VERSIONS[version], "pycuda-2022.json"]
    for name in surfaces:
        shutil.copyfile(os.path.join(standins.SURFACES, name), os.path.join(package, "surfaces", name))
    config = {"version": version, "io": [list(t[:2]) + [list(t[2])] + list(t[3:]) for t in io],
              "layers": [list(layer) for layer in layers], "plan": "engine-bytes", "max_batch": max_batch,
              "pycuda": surfaces[1], "log_folder": folder}
    _write(os.path.join(package, "device.json"), json.dumps(config, indent=2))
    _write(os.path.join(package, "device.py"), _LOADED)
    _write(os.path.join(site, "tensorrt", "__init__.py"), _REPLACE.format(name="TENSORRT", module="tensorrt"))
    _write(os.path.join(site, "pycuda", "__init__.py"), "")
    _write(os.path.join(site, "pycuda", "driver.py"), _REPLACE.format(name="DRIVER", module="pycuda.driver"))
    trtexec = os.path.join(bin_, "trtexec")
    _write(trtexec, _TRTEXEC.format(python=python or sys.executable, site=site,
                                    version=standins.FULL_VERSIONS[version]), 0o755)
    source = os.path.join(lib, "libcuda.c")
    _write(source, _LIBCUDA)
    major, minor = gpu[1].split(".")
    subprocess.run([compiler(), "-shared", "-fPIC", "-o", os.path.join(lib, "libcuda.so.1"), source,
                    "-DSM_MAJOR=" + major, "-DSM_MINOR=" + minor, '-DGPU_NAME="{}"'.format(gpu[0])],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    return {"PYTHONPATH": site, "LD_LIBRARY_PATH": lib, "TRTEXEC": trtexec}


def calls_made(folder):
    """``[(class, member, [repr of each argument])]`` of every stand-in call that the processes using ``folder``'s
    device made (their logs are removed: the next command starts a new log)."""
    found = []
    for name in sorted(os.listdir(str(folder))):
        if name.startswith("calls-") and name.endswith(".json"):
            path = os.path.join(str(folder), name)
            with open(path) as handle:
                found += [(cls, member, args) for cls, member, args in json.load(handle)]
            os.remove(path)
    return found
