"""Video decoding for `edgecsp infer`'s reader: OpenCV's VideoCapture (FFmpeg with its own threads) vs PyAV
with FFmpeg's frame/slice threads (thread_type AUTO) and with one thread, to BGR arrays as the pipeline needs.

    .venv/bin/python scripts/decode_bench.py VIDEO [VIDEO ...] [--rounds 3]

Each decoder runs in its own process, alternating round by round; prints the median wall and process-CPU
milliseconds per frame. Measured 2026-12-02 on a 2-core Xeon (AVX-512/AMX), 640x360: OpenCV 0.84 ms wall /
1.4 ms CPU per frame (mpeg4), 0.73 / 1.3 (H.264); PyAV threaded 1.4 / 1.6 and 1.3 / 1.5; PyAV one thread 1.4 /
1.7 and 1.2 / 1.6. OpenCV is faster on both, so the reader keeps it.
"""
import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys, time
mode, path = sys.argv[1], sys.argv[2]
t0, c0, n = time.perf_counter(), time.process_time(), 0
if mode == "opencv":
    import cv2
    cap = cv2.VideoCapture(path)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
else:
    import av
    with av.open(path) as box:
        stream = box.streams.video[0]
        if mode == "pyav-threads":
            stream.thread_type = "AUTO"
        else:
            stream.thread_count = 1
        for frame in box.decode(stream):
            frame.to_ndarray(format="bgr24")
            n += 1
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"frames": n, "wall_ms": 1000.0 * wall / max(n, 1), "cpu_ms": 1000.0 * cpu / max(n, 1)}))
"""
MODES = ("opencv", "pyav-threads", "pyav-1-thread")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for video in args.videos:
        runs = dict((m, []) for m in MODES)
        for _ in range(args.rounds):
            for mode in MODES:
                out = subprocess.check_output([sys.executable, "-c", CHILD, mode, video], universal_newlines=True)
                runs[mode].append(json.loads(out.strip().splitlines()[-1]))
        print(video)
        for mode in MODES:
            wall = sorted(r["wall_ms"] for r in runs[mode])[len(runs[mode]) // 2]
            cpu = sorted(r["cpu_ms"] for r in runs[mode])[len(runs[mode]) // 2]
            print("  {:<14} {:>5} frames  {:.2f} ms wall  {:.2f} ms CPU per frame".format(
                mode, runs[mode][0]["frames"], wall, cpu))


if __name__ == "__main__":
    main()
