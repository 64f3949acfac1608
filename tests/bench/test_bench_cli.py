"""`edgecsp bench`: the JSON report, child-process isolation and alternation, and each kind of measurement."""
import json
import os

import pytest

from tests.gates import needs

from edgecsp.cli import main

TINY_CFG = """[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58
classes=2
num=3
"""


@pytest.fixture(scope="module")
def tiny_darknet(tmp_path_factory):
    from edgecsp.darknet import parse_cfg, plan_network, random_weights, write_weights

    folder = tmp_path_factory.mktemp("tiny_darknet")
    cfg, weights = str(folder / "tiny.cfg"), str(folder / "tiny.weights")
    with open(cfg, "w") as f:
        f.write(TINY_CFG)
    plan = plan_network(parse_cfg(cfg))
    write_weights(weights, plan, random_weights(plan, seed=0))
    return cfg, weights


def test_vs_runs_each_configuration_in_its_own_process_alternated(demo_onnx, demo_ir, tmp_path, capsys):
    out = str(tmp_path / "bench.json")
    assert main(["bench", "--engine", demo_onnx, "--vs", demo_ir, "--seconds", "0.2", "--warmup", "1",
                 "--rounds", "2", "--report", out]) == 0
    report = json.load(open(out))
    assert report["schema"] == "edgecsp-bench/1"
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    assert report["settings"]["rounds"] == 2
    onnx, ir = report["results"]
    assert (onnx["name"], onnx["backend"], ir["backend"]) == (demo_onnx, "onnxruntime", "openvino")
    for res in (onnx, ir):
        lat = res["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and res["throughput_fps"] > 0
        assert res["in_flight"] == 3 and len(res["rounds"]) == 2
    pids = [r["pid"] for res in (onnx, ir) for r in res["rounds"]]
    assert len(set(pids)) == 4 and os.getpid() not in pids  # four fresh child processes
    starts = [onnx["rounds"][0]["started"], ir["rounds"][0]["started"], onnx["rounds"][1]["started"],
              ir["rounds"][1]["started"]]
    assert starts == sorted(starts)  # alternated: onnx, ir, onnx, ir
    (ratio,) = report["ratios"]
    assert ratio["vs"] == demo_ir and ratio["throughput"] == pytest.approx(
        onnx["throughput_fps"] / ir["throughput_fps"])
    assert "p50 ms" in capsys.readouterr().out


def test_bad_baseline_is_a_one_line_error(demo_onnx, capsys):
    assert main(["bench", "--engine", demo_onnx, "--vs", "model.pt"]) == 3
    assert "torch:MODEL" in capsys.readouterr().err
    assert main(["bench", "--engine", demo_onnx, "--vs", "opencv:only.cfg"]) == 3


def test_video_run_reports_stages_and_memory(demo_onnx, demo_video):
    from edgecsp.bench_measure import measure_video

    video, _ = demo_video
    record = measure_video(demo_onnx, video, max_frames=12, outputs="all", checkpoints=(5, 12))
    assert record["mode"] == "pipelined" and record["frames"] == 12 and record["fps"] > 0
    assert list(record["ms_per_frame"]) == ["read", "preprocess", "wait", "postprocess", "draw", "write"]
    assert [m["frames"] for m in record["memory"]] == [5, 12]
    assert all(m["peak_rss_mb"] >= m["rss_mb"] > 10 for m in record["memory"])
    sync = measure_video(demo_onnx, video, sync=True, max_frames=5, outputs="json")
    assert sync["mode"] == "sync" and "draw" not in sync["ms_per_frame"]
    # CPU time per stage (thread CPU clocks), the part outside the network, and the whole process
    cpu = record["cpu_ms_per_frame"]
    assert list(cpu) == list(record["ms_per_frame"]) and all(v >= 0 for v in cpu.values())
    assert cpu["draw"] + cpu["write"] + cpu["preprocess"] > 0
    outside = sum(v for k, v in cpu.items() if k != "wait")  # waiting for the network's results
    assert abs(record["non_network_cpu_ms_per_frame"] - outside) < 1e-9
    assert record["process_cpu_ms_per_frame"] >= record["non_network_cpu_ms_per_frame"]


def test_the_stage_timer_counts_cpu_time_not_waiting():
    import time

    from edgecsp.runtime.timing import StageTimer

    timer = StageTimer().start()
    with timer.stage("read"):
        time.sleep(0.05)  # waiting: wall time, no CPU
    with timer.stage("postprocess"):
        end = time.perf_counter() + 0.05
        while time.perf_counter() < end:  # working: CPU time
            pass
    timer.count_frames(1)
    summary = timer.summary()
    assert summary["ms_per_frame"]["read"] >= 45 and summary["cpu_ms_per_frame"]["read"] < 10
    assert summary["cpu_ms_per_frame"]["postprocess"] >= 5  # a loaded machine may preempt it, never to 0
    assert summary["non_network_cpu_ms_per_frame"] == pytest.approx(sum(summary["cpu_ms_per_frame"].values()))


def test_torch_and_opencv_baselines(tiny_darknet):
    needs("torch")
    needs("opencv")
    from edgecsp.bench_measure import measure_opencv, measure_torch

    spec = ",".join(tiny_darknet)
    for record in (measure_torch(spec, seconds=0.05, warmup=1), measure_opencv(spec, seconds=0.05, warmup=1),
                   measure_torch("shapes_tiny_csp", seconds=0.05, warmup=1, size=(64, 64))):
        assert record["latency_ms"]["runs"] >= 20 and record["throughput_fps"] > 0
        assert record["input"] == [64, 64] and record["backend"] in ("torch-eager", "opencv-dnn")


def _latency_result(name, p50):
    lat = {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.2, "mean": p50}
    return {"name": name, "latency_ms": lat, "throughput_fps": 1000.0 / p50}


def test_the_table_shows_full_configuration_names():
    from edgecsp.bench import format_report

    folder = "/home/user/projects/detector/engines/shapes_tiny_csp-256x256-op13"
    names = [folder + "-fp16.xml", folder + "-int8.xml", "torch:shapes_tiny_csp"]
    report = {"machine": {"cpu": "cpu", "cores": 2, "usable_cores": 2, "load_avg": [0.5, 0.5, 0.5]},
              "results": [_latency_result(n, p) for n, p in zip(names, (2.0, 1.5, 6.0))], "ratios": []}
    lines = format_report(report).splitlines()
    rows = [l for l in lines if l.split()[0] in names]
    assert [r.split()[0] for r in rows] == names  # whole names, not their last 44 characters
    assert lines[1].split()[0] == "configuration"
    assert len(set(len(l) for l in [lines[1]] + rows)) == 1  # the columns line up under the header


def test_nms_alone_prints_the_nms_table(capsys):
    needs("opencv")
    assert main(["bench", "--nms", "500"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert not any(l.startswith("configuration") for l in lines)  # no empty configuration table
    header = [i for i, l in enumerate(lines) if l.split()[:3] == ["boxes", "classes", "count"]]
    assert len(header) == 1
    rows = [l.split() for l in lines[header[0] + 1:]]
    assert [r[:3] for r in rows] == [["uniform", "1", "500"], ["uniform", "80", "500"], ["clustered", "1", "500"],
                                     ["clustered", "80", "500"]]
    assert all(float(r[4]) > 0 and float(r[5]) > 0 and r[7] in ("yes", "no") for r in rows)


def test_the_library_checks_its_numbers_as_the_cli_does(tmp_path):
    from edgecsp.bench import BenchConfig, bench
    from edgecsp.errors import InputError

    for field, value, message in (("seconds", 0.0, "--seconds"), ("in_flight", 0, "--in-flight"),
                                  ("rounds", -1, "--rounds"), ("max_frames", 0, "--max-frames")):
        with pytest.raises(InputError, match=message):
            bench(BenchConfig(engine=str(tmp_path / "m.onnx"), **{field: value}))
