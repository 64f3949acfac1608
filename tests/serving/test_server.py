"""A real Triton server (the one nvidia-pytriton ships) on 127.0.0.1, free ports, stopped by the test: edgecsp's
runner serves the artefact in its python backend and clients get the detections local `edgecsp infer` gives."""
import json
import socket
import urllib.request

import numpy as np
import pytest

from tests.gates import needs

from edgecsp.cli import main
from edgecsp.errors import ServerError

pytestmark = [pytest.mark.tritonclient, pytest.mark.tritonserver, pytest.mark.openvino]


@pytest.fixture(scope="module")
def served(demo_ir):
    needs("tritonserver", "tritonclient")
    from edgecsp.serving import serving

    with serving(demo_ir, name="demo", max_batch=8) as (server, packaged):
        yield server, packaged


def _lines(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def test_health_and_same_detections_as_local(served, demo_ir, demo_video, tmp_path, capsys):
    server, packaged = served
    with urllib.request.urlopen(server.http_url + "/v2/health/ready", timeout=5) as reply:
        assert reply.status == 200
    video, _ = demo_video
    local, remote = str(tmp_path / "local.jsonl"), str(tmp_path / "remote.jsonl")
    assert main(["infer", "--engine", demo_ir, video, "--save-json", local, "--no-progress"]) == 0
    assert main(["infer", "--server", server.grpc_url, "--model", "demo", video, "--save-json", remote,
                 "--no-progress"]) == 0
    got, want = _lines(remote), _lines(local)
    assert len(got) == len(want) == 60 and sum(len(r["detections"]) for r in want) > 0
    for a, b in zip(got, want):
        assert [d["class_id"] for d in a["detections"]] == [d["class_id"] for d in b["detections"]]
        np.testing.assert_allclose([d["box"] for d in a["detections"]], [d["box"] for d in b["detections"]],
                                   atol=1e-3)
        np.testing.assert_allclose([d["score"] for d in a["detections"]], [d["score"] for d in b["detections"]],
                                   atol=1e-5)


def test_runner_outputs_and_dynamic_batching(served, demo_ir):
    from edgecsp.backends import open_runner
    from edgecsp.serving.client import TritonRunner

    server, _ = served
    frames = np.random.default_rng(0).integers(0, 255, (24, 1, 256, 256, 3), dtype=np.uint8)
    with open_runner(demo_ir) as local:
        want = [local.infer(f) for f in frames]
        names = local.meta.names
    before = _statistics(server)
    with TritonRunner(server.grpc_url, "demo").set_in_flight(8) as remote:
        assert remote.meta.names == names and remote.input_shape == (None, 256, 256, 3)
        assert remote.max_batch == 8  # the server's max_batch_size caps the pipeline's batches of streams
        handles = [remote.submit(f) for f in frames]
        got = [h.result(timeout=60) for h in handles]
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            np.testing.assert_allclose(a, b, atol=1e-4)
    inferences, executions = [a - b for a, b in zip(_statistics(server), before)]
    assert inferences == 24 and executions < 24  # the dynamic batcher put several requests in one execution


def _statistics(server):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url[len("grpc://"):])
    stats = client.get_inference_statistics("demo", as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def test_bench_measures_the_server(served):
    from edgecsp.bench import BenchConfig, bench

    server, _ = served
    report = bench(BenchConfig(engine=None, server=server.grpc_url, model="demo", seconds=0.3, warmup=2, rounds=1))
    result = report["results"][0]
    assert result["backend"] == "triton" and result["throughput_fps"] > 0 and result["in_flight"] == 3


def test_server_errors_are_one_line(served, demo_video, demo_ir, capsys):
    server, _ = served
    video, _ = demo_video
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        nobody = "grpc://127.0.0.1:{}".format(sock.getsockname()[1])  # bound, not listening
        cases = [
            (["--server", nobody, "--model", "demo"], 8, "cannot reach the Triton server at 127.0.0.1:"),
            (["--server", server.grpc_url, "--model", "nope"], 8, "has no ready model 'nope' (it has demo)"),
            (["--server", "http://127.0.0.1:8000", "--model", "demo"], 3, "is not a gRPC URL: pass grpc://HOST:PORT"),
            (["--engine", demo_ir, "--server", server.grpc_url, "--model", "demo"], 3, "pass either --engine"),
            (["--server", server.grpc_url, "--model", "demo", "--threads", "2"], 3,
             "--threads apply to local artefacts"),
        ]
        for args, code, message in cases:
            assert main(["infer"] + args + [video, "--no-progress"]) == code, args
            err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
            assert len(err) == 1 and message in err[0], (args, err)
    port = int(server.grpc_url.rsplit(":", 1)[1])
    from edgecsp.serving import serving

    with pytest.raises(ServerError, match="--grpc-port 127.0.0.1:{} is taken".format(port)):
        with serving(demo_ir, grpc_port=port):
            pass


def test_dynamic_batch_artefact_is_batched_in_one_call(tmp_path, demo_card):
    """A dynamic-batch ONNX: the served model stacks the requests Triton batched into one runner call."""
    needs("tritonserver", "tritonclient", "torch", "onnxruntime")
    from edgecsp.backends import open_runner
    from edgecsp.export.onnx_export import ExportConfig, export
    from edgecsp.serving import serving
    from edgecsp.serving.client import TritonRunner

    onnx_path = export(ExportConfig(card=demo_card, output=str(tmp_path / "dyn.onnx"), dynamic_batch=True)).path
    batch = np.random.default_rng(1).random((3, 3, 256, 256), dtype=np.float32)
    with open_runner(onnx_path) as local:
        want = local.infer(batch)
    with serving(onnx_path, name="dyn", max_batch=4) as (server, packaged):
        assert packaged.config["max_batch_size"] == 4
        with TritonRunner(server.grpc_url, "dyn") as remote:
            got = remote.infer(batch)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_serve_command_runs_until_sigterm(demo_ir, tmp_path):
    """`edgecsp serve` as users run it: prints where it serves, answers health checks, stops cleanly on SIGTERM
    and leaves no server behind."""
    import signal
    import subprocess
    import sys
    import time

    from edgecsp.serving.server import free_port

    needs("tritonserver", "tritonclient")
    http, grpc = free_port(), free_port()
    log = str(tmp_path / "server.log")
    proc = subprocess.Popen([sys.executable, "-m", "edgecsp", "serve", "-e", demo_ir, "--model", "demo", "--http-port",
                             str(http), "--grpc-port", str(grpc), "--log", log], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("serving demo (python backend, dynamic batching up to 8") and str(grpc) in first
        with urllib.request.urlopen("http://127.0.0.1:{}/v2/health/ready".format(http), timeout=5) as reply:
            assert reply.status == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and out.strip().endswith("stopped"), (out, err)
    time.sleep(0.5)
    with pytest.raises(OSError):  # nothing listens there any more
        urllib.request.urlopen("http://127.0.0.1:{}/v2/health/ready".format(http), timeout=2)


def test_server_with_one_model_needs_no_model_name(served, demo_video, tmp_path):
    server, _ = served
    video, _ = demo_video
    named, bare = str(tmp_path / "named.jsonl"), str(tmp_path / "bare.jsonl")
    assert main(["infer", "--server", server.grpc_url, "--model", "demo", video, "--save-json", named, "--max-frames",
                 "5", "--no-progress"]) == 0
    assert main(["infer", "--server", server.grpc_url, video, "--save-json", bare, "--max-frames", "5",
                 "--no-progress"]) == 0
    assert _lines(bare) == _lines(named) and sum(len(r["detections"]) for r in _lines(bare)) > 0


def test_several_models_on_one_server(demo_ir, demo_onnx, demo_video, tmp_path, capsys):
    """`edgecsp serve A B --model ir --model ort`: each artefact is its own model; --server alone is then ambiguous
    and the message lists the models."""
    import signal
    import subprocess
    import sys

    from edgecsp.serving.client import ready_models
    from edgecsp.serving.server import free_port

    needs("tritonserver", "tritonclient", "onnxruntime")
    video, _ = demo_video
    http, grpc = free_port(), free_port()
    url = "grpc://127.0.0.1:{}".format(grpc)
    proc = subprocess.Popen([sys.executable, "-m", "edgecsp", "serve", "-e", demo_ir, "-e", demo_onnx, "--model", "ir", "--model",
                             "ort", "--http-port", str(http), "--grpc-port", str(grpc), "--max-batch", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    try:
        first, second = proc.stdout.readline(), proc.stdout.readline()
        assert first.startswith("serving ir (") and second.startswith("serving ort ("), (first, second)
        assert ready_models(url) == ["ir", "ort"]
        assert main(["infer", "--server", url, video, "--max-frames", "2", "--no-progress"]) == 3
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "serves 2 models (ir, ort): pass --model NAME" in err[0], err
        outputs = {}
        for name in ("ir", "ort"):
            out = str(tmp_path / (name + ".jsonl"))
            assert main(["infer", "--server", url, "--model", name, video, "--save-json", out, "--max-frames", "3",
                         "--no-progress"]) == 0
            outputs[name] = _lines(out)
        assert sum(len(r["detections"]) for r in outputs["ir"]) > 0
        for a, b in zip(outputs["ir"], outputs["ort"]):  # one model, two backends: the same objects
            assert [d["class_id"] for d in a["detections"]] == [d["class_id"] for d in b["detections"]]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and out.strip().endswith("stopped")


def test_serve_names_are_checked_before_any_server_starts(demo_ir, tmp_path, capsys):
    from edgecsp.serving import model_names

    assert model_names(["a/x.xml", "b/y.onnx"]) == ["x", "y"]
    cases = [
        (["-e", demo_ir, "-e", demo_ir], "would both be model 'shapes_tiny_csp-cpu-fp32' on the server: give each a --model"),
        (["-e", demo_ir, "-e", demo_ir, "--model", "one"], "1 --model for 2 artefacts: give one --model per artefact"),
        (["-e", demo_ir, "--model", "a", "--model", "b"], "2 --model for 1 artefacts"),
    ]
    for args, message in cases:
        assert main(["serve"] + args + ["--tritonserver", str(tmp_path / "none")]) == 3
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0], (args, err)
