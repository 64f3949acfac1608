"""OpenCV DNN vs edgecsp (OpenVINO FP32 IR from `edgecsp build --target cpu`) on one darknet model.

Usage: python bench_darknet_vs_opencv.py CFG WEIGHTS IR.xml [--rounds 3] [--runs 30]
Each measurement runs in its own process (load, 5 warm-up runs, RUNS timed runs, median), alternating
OpenCV / edgecsp for ROUNDS rounds, on the same input blob (1x3xHxW float32 in 0..1).
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

CHILD = r"""
import json, statistics, sys, time
import numpy as np
kind, cfg, weights, xml, runs, h, w = sys.argv[1:8]
runs, h, w = int(runs), int(h), int(w)
x = np.random.default_rng(0).random((1, 3, h, w)).astype(np.float32)
if kind == "opencv":
    import cv2
    net = cv2.dnn.readNetFromDarknet(cfg, weights)
    names = net.getUnconnectedOutLayersNames()
    def run():
        net.setInput(x)
        return net.forward(names)
    info = "OpenCV %s, %d threads" % (cv2.__version__, cv2.getNumThreads())
else:
    from edgecsp.backends import open_runner
    runner = open_runner(xml).__enter__()
    def run():
        return runner.infer(x)
    import openvino
    info = "OpenVINO %s via edgecsp runner" % openvino.__version__
for _ in range(5):
    run()
times = []
for _ in range(runs):
    t = time.perf_counter()
    run()
    times.append((time.perf_counter() - t) * 1000.0)
print(json.dumps({"kind": kind, "median_ms": statistics.median(times), "min_ms": min(times), "info": info}))
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("xml")
    p.add_argument("--size", type=int, default=416)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=30)
    a = p.parse_args()
    results = {"opencv": [], "edgecsp": []}
    for r in range(a.rounds):
        for kind in ("opencv", "edgecsp"):
            out = subprocess.run([sys.executable, "-c", CHILD, kind, a.cfg, a.weights, a.xml, str(a.runs),
                                  str(a.size), str(a.size)], capture_output=True, text=True, check=True)
            rec = json.loads(out.stdout.strip().splitlines()[-1])
            results[kind].append(rec["median_ms"])
            print("round {} {:8s} median {:7.2f} ms  min {:7.2f} ms  ({})".format(
                r, kind, rec["median_ms"], rec["min_ms"], rec["info"]), flush=True)
    cv, ours = statistics.median(results["opencv"]), statistics.median(results["edgecsp"])
    print("median of medians: OpenCV DNN {:.2f} ms, edgecsp OpenVINO FP32 {:.2f} ms, ratio OpenCV/edgecsp {:.2f}x"
          .format(cv, ours, cv / ours))


if __name__ == "__main__":
    main()
