"""OpenCV DNN vs edgecsp (OpenVINO FP32 IR) on one darknet model: a thin wrapper over `edgecsp bench`.

Usage: python bench_darknet_vs_opencv.py CFG WEIGHTS IR.xml [--rounds 3] [--seconds 3]
Same as: edgecsp bench --engine IR.xml --vs opencv:CFG,WEIGHTS --rounds 3 (each configuration in its own
process, alternated, medians over the rounds); scripts/benchmarks.py runs it as part of docs/benchmarks.md.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edgecsp.bench import BenchConfig, bench, format_report  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("xml")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    a = p.parse_args()
    report = bench(BenchConfig(engine=a.xml, vs=("opencv:{},{}".format(a.cfg, a.weights),), rounds=a.rounds,
                               seconds=a.seconds), log=print)
    print(format_report(report))


if __name__ == "__main__":
    main()
