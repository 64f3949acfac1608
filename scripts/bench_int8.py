"""Throughput of artefacts as a ratio to a baseline, measured in one run (STYLE.md 15: benchmarks are not tests).

    python scripts/bench_int8.py engines/m-cpu-fp32.xml engines/m-cpu-int8.xml [--rounds 5] [--seconds 3]

Each measurement runs in its own process (a fresh runtime, no cache or allocator state shared) and the
artefacts alternate round by round, so slow drifts of a shared machine hit all of them alike. A process
opens the runner, warms up, then calls ``runner.infer`` on one preprocessed frame (batch 1, synchronous) for
``--seconds``. Reported per artefact: the median fps over rounds and the median of its per-round ratios to the
first artefact (each round's pair is measured back to back, so load drifts of a shared machine cancel out).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def worker(path, seconds, threads, warmup):
    from edgecsp.backends import open_runner
    from edgecsp.data.shapes import dataset_sample
    from edgecsp.runtime.preprocess import preprocess

    options = {"threads": threads} if threads else {}
    with open_runner(path, **options) as runner:
        batch = preprocess([dataset_sample(123, 0)[0]], runner.meta)[0]
        end = time.perf_counter() + warmup
        while time.perf_counter() < end:
            runner.infer(batch)
        latencies = []
        start = time.perf_counter()
        end = start + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            runner.infer(batch)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    return {"fps": len(latencies) / elapsed, "median_ms": 1000.0 * statistics.median(latencies),
            "frames": len(latencies)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artefacts", nargs="+", help="the baseline first, then the artefacts to compare with it")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed inference per measurement")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--threads", type=int, help="inference threads (default: the backend's)")
    parser.add_argument("--json", help="write the measurements as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.seconds, args.threads, args.warmup)))
        return 0
    runs = dict((path, []) for path in args.artefacts)
    for round_index in range(args.rounds):
        order = args.artefacts if round_index % 2 == 0 else list(reversed(args.artefacts))
        for path in order:
            command = [sys.executable, os.path.abspath(__file__), path, "--worker", path, "--seconds",
                       str(args.seconds), "--warmup", str(args.warmup)]
            if args.threads:
                command += ["--threads", str(args.threads)]
            proc = subprocess.run(command, capture_output=True, text=True)
            if proc.returncode:
                sys.stderr.write(proc.stderr)
                return proc.returncode
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[path].append(result)
            print("round {} {:<40} {:8.1f} fps  {:6.2f} ms".format(round_index + 1, os.path.basename(path),
                                                                  result["fps"], result["median_ms"]))
    baseline = runs[args.artefacts[0]]
    summary = []
    for path in args.artefacts:
        fps = statistics.median(r["fps"] for r in runs[path])
        # the ratio within each round (measured back to back) is what a shared machine's load drifts cancel in
        ratios = [r["fps"] / b["fps"] for r, b in zip(runs[path], baseline)]
        summary.append({"artefact": path, "median_fps": fps, "ratio": statistics.median(ratios),
                        "round_ratios": ratios, "median_ms": statistics.median(r["median_ms"] for r in runs[path]),
                        "runs": runs[path]})
        print("{:<40} median {:8.1f} fps  x{:.2f} vs {} (per round x{:.2f} .. x{:.2f})".format(
            os.path.basename(path), fps, statistics.median(ratios), os.path.basename(args.artefacts[0]),
            min(ratios), max(ratios)))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rounds": args.rounds, "seconds": args.seconds, "threads": args.threads, "results": summary},
                      handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
