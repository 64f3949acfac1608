"""JetPack in a box: a real CPython 3.6 with JetPack 4.6.x's Python side, for the tests of the device half.

``python36_env()`` returns the ``python`` of a CPython 3.6 virtual environment built once and cached under
``.cache/py36/<hash of REQUIREMENTS>/`` (git-ignored; ``EDGECSP_PY36_CACHE`` moves it). How it is built:

1. ``python3.6 -m venv`` with pyenv's CPython 3.6 (``EDGECSP_PYTHON36`` names another one);
2. pip 21.3.1 (the last pip for 3.6) only *downloads* the pinned cp36 wheels into a wheelhouse, from PyPI,
   with this machine's pip configuration ignored;
3. pip is downgraded to 9.0.1, JetPack 4.6's (Ubuntu 18.04's python3-pip), and that pip installs everything
   offline from the wheelhouse (``--no-index --find-links``), as a Jetson's pip installs wheel files.

pip 9.0.1 predates manylinux2010/2014: a wheel with only those tags is re-tagged ``linux_<arch>`` (same bytes,
new file name), which is what the Jetson Zoo's aarch64 wheels of ONNX Runtime are (``linux_aarch64``); on a real
Jetson, pip 9 takes no manylinux wheel at all (manylinux1 is x86-only). The env records what it holds in
``env.json``. It is the Jetson's system Python: treat it as read-only. A test plays a Jetson user with its own HOME
(``run36(..., home=folder)``): ``pip install --user`` (``pip9``) puts edgecsp's wheel or stand-ins in
``folder/.local``, leaving the cache untouched (the user site comes after the env's own packages here, before
them on a Jetson: install only what the env lacks).

``HOST_ONLY`` below is the one statement of what never runs on the device; everything else under ``edgecsp/`` is
the device half (``device_modules()``), which tests/test_python36.py holds to Python 3.6.

No pytest at import (``scripts/python36_env.py`` builds the env outside pytest); ``python36_env`` skips through
the ``py36`` gate of ``tests/gates.py`` where no CPython 3.6 is found, saying so.
"""
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("EDGECSP_PY36_CACHE") or os.path.join(ROOT, ".cache", "py36")

# The device half is a folder: edgecsp/ minus these host-only parts (paths from the repository root; a folder ends
# in "/"). The device half (runtime, targets, the backends' runners and on-device engine build, calibration, data,
# the CLI, build, infer, bench) must not import any of them at module level, and must run on Python 3.6.
HOST_ONLY = (
    "edgecsp/export/",  # PyTorch / darknet -> ONNX (torch, onnx)
    "edgecsp/models/",  # the PyTorch model families and their registry
    "edgecsp/training/",
    "edgecsp/darknet/",  # the .cfg/.weights importer (torch)
    "edgecsp/evaluation/",  # mAP, compare, the INT8 accuracy gate's metric
    "edgecsp/data/shapes.py",  # the synthetic training/demo data (numpy 1.17+); data/coco.py is device code
    "edgecsp/backends/tensorrt/host/",  # bundle writer, lint, fit, FP16 check, host calibration, trtexec, the wheel
    # serving's server side (Triton, DeepStream); its client (`infer --server`) is device code
    "edgecsp/serving/server.py", "edgecsp/serving/repository.py", "edgecsp/serving/deepstream.py",
    "edgecsp/serving/triton_model.py",
)


def module_name(relative_path):
    """``edgecsp/runtime/nms.py`` -> ``edgecsp.runtime.nms``; a package's ``__init__.py`` -> the package."""
    parts = relative_path[:-3].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_host_only(module):
    """Whether edgecsp module ``module`` (a dotted name) lies in ``HOST_ONLY``."""
    for entry in HOST_ONLY:
        prefix = entry.rstrip("/")[:-3] if entry.endswith(".py") else entry.rstrip("/")
        prefix = prefix.replace("/", ".")
        if module == prefix or (entry.endswith("/") and module.startswith(prefix + ".")):
            return True
    return False


def package_files(root=ROOT):
    """Every ``.py`` file of the edgecsp package, relative to ``root``, sorted."""
    found = []
    for folder, dirs, files in os.walk(os.path.join(root, "edgecsp")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found += [os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/") for f in files
                  if f.endswith(".py")]
    return sorted(found)


def device_files(root=ROOT):
    """The device half's files: the package minus ``HOST_ONLY``."""
    return [path for path in package_files(root) if not is_host_only(module_name(path))]


def device_modules(root=ROOT):
    return [module_name(path) for path in device_files(root)]


DOWNLOADER_PIP = "pip==21.3.1"  # the newest pip that runs on 3.6; only downloads here
JETPACK_PIP = "pip==9.0.1"  # Ubuntu 18.04's python3-pip, what JetPack 4.6.x has
# JetPack 4.6.x's Python packages as far as PyPI gives them for x86-64 (pinned: the hash of this list names the env)
REQUIREMENTS = (
    "numpy==1.19.5",  # docker/Dockerfile.jetpack4's pin (the last numpy with cp36 wheels)
    "opencv-python-headless==4.1.1.26",  # JetPack 4.6's OpenCV is 4.1.1 (this wheel has no GStreamer)
    "onnxruntime==1.10.0",  # the last ONNX Runtime for cp36 (the Jetson Zoo's JetPack 4.6 wheel is 1.10 too)
    "protobuf==3.19.6", "flatbuffers==2.0",  # onnxruntime's dependencies
    # pytest 7.0.1 (the last for 3.6) and its dependencies, to run the runtime's tests on 3.6
    "pytest==7.0.1", "attrs==22.2.0", "importlib-metadata==4.8.3", "iniconfig==1.1.1", "packaging==21.3",
    "pluggy==1.0.0", "py==1.11.0", "pyparsing==3.1.4", "tomli==1.2.3", "typing-extensions==4.1.1", "zipp==3.6.0",
    "hypothesis==6.31.6", "sortedcontainers==2.4.0",  # the last hypothesis for 3.6: the runtime's fuzz tests
)
# what env.json must report (import name -> version) for the env to count as built
EXPECTED = {"numpy": "1.19.5", "cv2": "4.1.1", "onnxruntime": "1.10.0", "pytest": "7.0.1", "pip": "9.0.1"}
BUILD_VERSION = 2  # bump when the recipe below changes without REQUIREMENTS changing


def find_python36():
    """The CPython 3.6 interpreter: ``EDGECSP_PYTHON36``, else the newest 3.6.x under pyenv's root; or None."""
    given = os.environ.get("EDGECSP_PYTHON36")
    if given:
        return given if os.access(given, os.X_OK) else None
    roots = [os.environ.get("PYENV_ROOT"), os.path.expanduser("~/.pyenv")]
    found = []
    for root in [r for r in roots if r]:
        for path in glob.glob(os.path.join(root, "versions", "3.6.*", "bin", "python3.6")):
            match = re.search(r"/3\.6\.(\d+)/bin/", path)
            if match and os.access(path, os.X_OK):
                found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def env_key(python36=None):
    """The cache folder's name: a hash of the interpreter's version, the pins and the recipe."""
    python36 = python36 or find_python36()
    version = subprocess.check_output([python36, "-c", "import sys; print(sys.version)"], universal_newlines=True)
    text = json.dumps([version.strip(), DOWNLOADER_PIP, JETPACK_PIP, list(REQUIREMENTS), BUILD_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def clean_environ(home=None, **extra):
    """os.environ without what would leak the host's Python, pip or CI settings into the 3.6 env. With ``home``,
    a Jetson user's: HOME is ``home``, the user site (``home/.local``, where ``pip install --user`` puts edgecsp)
    is on, and ``home/.local/bin`` leads PATH, as Ubuntu's ~/.profile does. Without it the user site is off."""
    # CI: the 3.6 env lacks the host's extras by design, so its pytest must skip (not fail) their gates
    env = dict((k, v) for k, v in os.environ.items() if not (
        k.startswith("PIP_") or k.startswith("PYTHON") or k in ("VIRTUAL_ENV", "PYENV_VERSION", "CI")))
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    for name in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT"):  # how this machine reaches PyPI, not what it installs
        if os.environ.get(name):
            env[name] = os.environ[name]
    if home is None:
        env["PYTHONNOUSERSITE"] = "1"
    else:
        env.update(HOME=str(home), PATH=os.path.join(str(home), ".local", "bin") + os.pathsep + env.get("PATH", ""))
    env.update(extra)
    return env


def run36(args, cwd=None, timeout=600, check=True, home=None, **extra_env):
    """Run ``args`` (the 3.6 python or a script first) in ``clean_environ(home, **extra_env)``; the
    CompletedProcess with text output. ``check``: a non-zero exit raises RuntimeError with both outputs."""
    proc = subprocess.run(args, cwd=cwd, env=clean_environ(home, **extra_env), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError("{} exited {}:\n{}\n{}".format(" ".join(args), proc.returncode, proc.stdout[-4000:],
                                                          proc.stderr[-4000:]))
    return proc


def _pip9_supported(python):
    """pip 9.0.1's own list of (python, abi, platform) tags this interpreter takes."""
    out = run36([python, "-c", "import json, pip.pep425tags as t; print(json.dumps(t.get_supported()))"]).stdout
    return set(tuple(tag) for tag in json.loads(out))


def _retag_for_pip9(wheelhouse, supported, log):
    """Rename the wheels pip 9.0.1 would refuse for their platform tag alone (manylinux2010/2014/_2_17) to
    ``linux_<arch>``; returns the renamed files. Anything else pip 9 refuses (Python/ABI) is left to fail."""
    native = sorted(set(plat for _, _, plat in supported if plat.startswith("linux_")))
    renamed = []
    for name in sorted(os.listdir(wheelhouse)):
        if not name.endswith(".whl"):
            continue
        parts = name[:-4].split("-")
        pys, abis, plats = parts[-3].split("."), parts[-2].split("."), parts[-1].split(".")
        tags = set((p, a, pl) for p in pys for a in abis for pl in plats)
        if tags & supported:
            continue
        if not native or not set((p, a, native[0]) for p in pys for a in abis) & supported:
            raise RuntimeError("pip 9.0.1 cannot install {} (Python/ABI tags)".format(name))
        new = "-".join(parts[:-1] + [native[0]]) + ".whl"
        os.rename(os.path.join(wheelhouse, name), os.path.join(wheelhouse, new))
        log("re-tagged for pip 9.0.1: {} -> {}".format(name, new))
        renamed.append([name, new])
    return renamed


def _platforms(name):
    return name[:-4].split("-")[-1].split(".")


def _prefer_manylinux1(pip, wheelhouse, log):
    """Swap a manylinux2010/2014 wheel for the same release's manylinux1 wheel where PyPI has one (pip 9.0.1
    installs manylinux1 as it is); pip 21.3.1 picked the newer tag."""
    arch = os.uname()[4]
    for name in sorted(os.listdir(wheelhouse)):
        if not name.endswith(".whl") or set(_platforms(name)) & set(["any", "linux_" + arch, "manylinux1_" + arch]):
            continue
        project, version = name.split("-")[:2]
        proc = run36(pip + ["download", "-q", "--no-deps", "--only-binary=:all:", "--platform", "manylinux1_" + arch,
                            "--python-version", "3.6", "--implementation", "cp", "-d", wheelhouse,
                            "{}=={}".format(project, version)], check=False)
        if proc.returncode == 0:
            os.remove(os.path.join(wheelhouse, name))
            log("took the manylinux1 wheel of {} {} (pip 9.0.1 installs it as it is)".format(project, version))


_PROBE = ("import json, sys, numpy, cv2, onnxruntime, pytest, pip; print(json.dumps({'python': sys.version.split()[0], "
          "'numpy': numpy.__version__, 'cv2': cv2.__version__, 'onnxruntime': onnxruntime.__version__, "
          "'pytest': pytest.__version__, 'pip': pip.__version__}))")


def build_env(folder, python36, log=print):
    """Build the env in ``folder`` (removed first if there); returns the record written to ``env.json``."""
    start = time.time()
    if os.path.exists(folder):
        shutil.rmtree(folder)
    venv, wheelhouse = os.path.join(folder, "venv"), os.path.join(folder, "wheelhouse")
    os.makedirs(wheelhouse)
    log("creating the CPython 3.6 venv: {} -m venv {}".format(python36, venv))
    # --system-site-packages keeps the user site on, as on the Jetson: ``pip install --user`` into a test's HOME
    run36([python36, "-m", "venv", "--system-site-packages", venv])
    python = os.path.join(venv, "bin", "python")
    pip = [python, "-m", "pip"]
    log("downloading {} and the cp36 wheels from PyPI".format(DOWNLOADER_PIP))
    for pin in (DOWNLOADER_PIP, JETPACK_PIP):
        run36(pip + ["download", "-q", "--no-deps", "-d", wheelhouse, pin])
    run36(pip + ["install", "-q", "--no-index", "--find-links", wheelhouse, DOWNLOADER_PIP])
    run36(pip + ["download", "-q", "--no-deps", "--only-binary=:all:", "-d", wheelhouse] + list(REQUIREMENTS))
    _prefer_manylinux1(pip, wheelhouse, log)
    log("downgrading to JetPack's {}, then installing offline with it".format(JETPACK_PIP))
    run36(pip + ["install", "-q", "--no-index", "--find-links", wheelhouse, JETPACK_PIP])
    renamed = _retag_for_pip9(wheelhouse, _pip9_supported(python), log)
    run36(pip + ["install", "-q", "--no-index", "--find-links", wheelhouse] + list(REQUIREMENTS))
    found = json.loads(run36([python, "-c", _PROBE], cwd=folder).stdout)
    wrong = dict((k, found.get(k)) for k, v in EXPECTED.items() if found.get(k) != v)
    if wrong:
        raise RuntimeError("the 3.6 env holds {} instead of {}".format(wrong, EXPECTED))
    record = dict(found, requirements=list(REQUIREMENTS), retagged=renamed, python_path=python36,
                  build_seconds=round(time.time() - start, 1), built=time.strftime("%Y-%m-%dT%H:%M:%S"))
    with open(os.path.join(folder, "env.json.tmp"), "w") as handle:
        json.dump(record, handle, indent=2)
    os.rename(os.path.join(folder, "env.json.tmp"), os.path.join(folder, "env.json"))  # marks the env complete
    log("built in {} s: {}".format(record["build_seconds"], folder))
    return record


def ensure_env(python36=None, log=print):
    """The cached env's folder, built first if it is missing or incomplete (one builder at a time: a lock)."""
    python36 = python36 or find_python36()
    if python36 is None:
        raise RuntimeError("no CPython 3.6 found: pyenv install 3.6.15 (or set EDGECSP_PYTHON36)")
    folder = os.path.join(CACHE, env_key(python36))
    if os.path.isfile(os.path.join(folder, "env.json")):
        return folder
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(os.path.join(folder, "env.json")):  # another builder may have finished meanwhile
            build_env(folder, python36, log)
            for other in os.listdir(CACHE):  # envs of older pins or recipes
                if other != os.path.basename(folder) and os.path.isdir(os.path.join(CACHE, other)):
                    shutil.rmtree(os.path.join(CACHE, other), ignore_errors=True)
    return folder


def env_record(folder):
    with open(os.path.join(folder, "env.json")) as handle:
        return json.load(handle)


def python36_env():
    """The ``python`` of the cached JetPack-in-a-box env (built on first use); skips where no CPython 3.6 is."""
    from tests.gates import needs

    needs("py36")
    return os.path.join(ensure_env(log=lambda line: None), "venv", "bin", "python")


def user_site(python, home):
    """Where ``python -m pip install --user`` puts packages for the Jetson user whose HOME is ``home``."""
    return run36([python, "-c", "import site; print(site.getusersitepackages())"], home=home).stdout.strip()


def pip9(python, args, home=None, **extra_env):
    """``python -m pip ARGS`` with the env's pip 9.0.1, offline (``PIP_NO_INDEX``), as ``home``'s user."""
    version = run36([python, "-m", "pip", "--version"]).stdout
    if not version.startswith("pip 9.0.1 "):
        raise RuntimeError("expected JetPack's pip 9.0.1, found " + version)
    return run36([python, "-m", "pip"] + list(args), home=home, PIP_NO_INDEX="1", **extra_env)


# README.txt's install lines that cannot run in the box, and why (every other line of its step 1 runs, in order)
NOT_IN_THE_BOX = (("sudo apt-get ", "apt installs JetPack's packages"), ("cuda", "CUDA is for pycuda"),
                  ("pycuda", "pycuda compiles against CUDA"), ("import tensorrt", "TensorRT's bindings come from apt"))


def readme_install_commands(readme_text):
    """The shell lines of a bundle README.txt's step 1 (indented by 4; continuation lines joined), in order."""
    step = readme_text.split("\n1. ", 1)[1].split("\n2. ", 1)[0]
    commands = []
    for line in step.splitlines():
        if not line.startswith("    "):
            continue
        if commands and commands[-1].endswith("\\"):
            commands[-1] = commands[-1][:-1].rstrip() + " " + line.strip()
        else:
            commands.append(line.strip())
    return commands


class JetsonUser(object):
    """A user of the "Jetson": HOME is ``home``; ``python3`` on PATH is the 3.6 env's (a shim, as /usr/bin/python3
    on JetPack); ``~/.local/bin`` leads PATH once edgecsp is installed; pip 9.0.1 runs offline (PIP_NO_INDEX)."""

    def __init__(self, home, python=None):
        self.python = python or python36_env()
        self.home = str(home)
        shim = os.path.join(self.home, ".shim")
        os.makedirs(shim, exist_ok=True)
        with open(os.path.join(shim, "python3"), "w") as handle:
            handle.write("#!/bin/sh\nexec {} \"$@\"\n".format(self.python))
        os.chmod(os.path.join(shim, "python3"), 0o755)
        self.path = shim + os.pathsep + os.environ.get("PATH", "")

    @property
    def site(self):
        """Where ``pip install --user`` puts packages for this user."""
        return user_site(self.python, self.home)

    def run(self, args, cwd=None, check=True, timeout=600, **extra_env):
        """``args`` run by this user (``run36`` with their HOME and PATH); the CompletedProcess."""
        path = os.path.join(self.home, ".local", "bin") + os.pathsep + self.path
        return run36(args, cwd=cwd or self.home, timeout=timeout, check=check, home=self.home, PIP_NO_INDEX="1",
                     PATH=path, **extra_env)

    def install_bundle(self, bundle):
        """Run the install lines of ``bundle``'s README.txt in one ``sh`` in the bundle folder, as written, except
        ``NOT_IN_THE_BOX``: ``(lines run, lines left out, output)``. The README's own ``export PATH`` puts
        ``~/.local/bin`` on PATH (it is not there before)."""
        with open(os.path.join(str(bundle), "README.txt")) as handle:
            commands = readme_install_commands(handle.read())
        ran = [c for c in commands if not any(key in c for key, _ in NOT_IN_THE_BOX)]
        proc = run36(["sh", "-c", "set -e\n" + "\n".join(ran) + "\n"], cwd=str(bundle), home=self.home,
                     PIP_NO_INDEX="1", PATH=self.path)
        return ran, [c for c in commands if c not in ran], proc.stdout + proc.stderr
