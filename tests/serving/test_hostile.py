"""Hostile and broken input against a real `edgecsp serve` (Triton 2.51, python backend): requests that claim
huge shapes, lie about their sizes or nest JSON a million deep are refused before the server allocates, and the
same server process then answers normal requests; a server that dies anyway is restarted a bounded number of
times; bad --log/--host/--port values fail in one line and leave nothing behind."""
import glob
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request

import numpy as np
import pytest

from tests.fuzzing import no_hang
from tests.gates import needs

from edgecsp.cli import main

pytestmark = [pytest.mark.tritonclient, pytest.mark.tritonserver, pytest.mark.openvino]

HUGE = [1000000000, 256, 256, 3]  # ~197 TB of uint8: Triton 2.51's HTTP JSON path allocated it (std::bad_alloc)
FRAME = [1, 256, 256, 3]  # what the demo IR takes (uint8 NHWC)


@pytest.fixture(scope="module")
def served(demo_ir):
    needs("tritonserver", "tritonclient")
    from edgecsp.serving import serving

    with serving(demo_ir, name="demo", max_batch=8) as (server, packaged):
        yield server, packaged


def _http(server, method, path, body=b"", headers=None, timeout=10.0):
    """(status, body) of one raw HTTP request, or (None, why) when the server gave no answer."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        reply = connection.getresponse()
        return reply.status, reply.read()
    except (OSError, http.client.HTTPException) as exc:
        return None, repr(exc)
    finally:
        connection.close()


def _json_infer(shape, datatype="UINT8", name="images", data=(0,)):
    return json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": list(data)}]})


def _binary_infer(shape, data_size, body_bytes, header_length=None):
    header = json.dumps({"inputs": [{"name": "images", "shape": shape, "datatype": "UINT8",
                                     "parameters": {"binary_data_size": data_size}}]}).encode()
    length = len(header) if header_length is None else header_length
    return header + b"\0" * body_bytes, {"Inference-Header-Content-Length": str(length),
                                         "Content-Type": "application/octet-stream"}


def _unfinished_body(server):
    """A request that claims a 1 PB body and sends 2 bytes: the server must wait (no allocation), not die."""
    import socket

    with socket.create_connection(("127.0.0.1", server.http_port), timeout=5) as sock:
        sock.sendall(b"POST /v2/models/demo/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000\r\n\r\n{}")
        sock.settimeout(0.5)
        try:
            return sock.recv(200)
        except OSError:
            return b""


def _grpc_request(shape, raw=None, contents=None, datatype="UINT8", name="images", model="demo"):
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = name, datatype
    tensor.shape.extend(shape)
    if contents is not None:
        tensor.contents.uint_contents.extend(contents)
    if raw is not None:
        request.raw_input_contents.append(raw)
    return request


def test_hostile_requests_then_normal_ones_on_the_same_server(served, demo_ir):
    """20 hostile requests (HTTP JSON, HTTP binary, gRPC), then 200 normal ones: every one of those answered with
    the local runner's outputs, by the same server process."""
    import grpc
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc import service_pb2_grpc

    from edgecsp.backends import open_runner

    server, _ = served
    pid = server.process.pid
    frame_bytes = int(np.prod(FRAME))
    refused = b"This API is restricted"
    # HTTP: Triton 2.51 sizes a JSON request's buffer from its claimed shape before checking it, and its JSON
    # parser recurses: edgecsp serve leaves HTTP inference (and every API that parses a body) locked
    http_cases = [
        ("POST", "/v2/models/demo/infer", _json_infer(HUGE), {}),  # aborted the server (std::bad_alloc)
        ("POST", "/v2/models/demo/infer", _json_infer([-1, 256, 256, 3]), {}),
        ("POST", "/v2/models/demo/infer", _json_infer([0, 256, 256, 3], data=()), {}),
        ("POST", "/v2/models/demo/infer", _json_infer([1.5, 256, 256, 3]), {}),
        ("POST", "/v2/models/demo/infer", _json_infer(FRAME, datatype="FP32", data=[0.0] * frame_bytes), {}),
        ("POST", "/v2/models/demo/infer", json.dumps({"inputs": []}), {}),
        ("POST", "/v2/models/demo/infer", _json_infer(FRAME, name="x", data=[0] * frame_bytes), {}),
        ("POST", "/v2/models/demo/infer") + _binary_infer(HUGE, 16, 16),
        ("POST", "/v2/models/demo/infer") + _binary_infer(FRAME, frame_bytes, 16, header_length=10 ** 12),
        ("POST", "/v2/repository/index", b"[" * 1000000, {}),  # segfaulted the server (recursive JSON parser)
        ("POST", "/v2/logging", json.dumps({"log_verbose_level": 3}), {}),  # would flood the log on every request
        ("POST", "/v2/systemsharedmemory/region/x/register",
         json.dumps({"key": "/x", "offset": 0, "byte_size": 1 << 40}), {}),
    ]
    for method, path, body, headers in http_cases:
        status, text = _http(server, method, path, body, headers)
        assert status == 403 and refused in text, (path, str(body)[:80], status, text)
    assert _unfinished_body(server) == b""  # no answer before the body came: it waits, allocates nothing
    # gRPC: Triton checks shape, batch, dtype and byte size against the config before it allocates
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel("127.0.0.1:{}".format(server.grpc_port)))
    grpc_cases = [
        (_grpc_request(HUGE, raw=b"\0" * 16), "batch-size must be <= 8"),
        (_grpc_request([100000, 256, 256, 3], raw=b"\0" * 16), "batch-size must be <= 8"),
        (_grpc_request(HUGE, contents=[0]), "batch-size must be <= 8"),
        (_grpc_request([1, 1000000000, 256, 3], raw=b"\0" * 16), "unexpected shape for input 'images'"),
        (_grpc_request([-1, 256, 256, 3], raw=b"\0" * 16), "input byte size mismatch"),
        (_grpc_request([8, 256, 256, 3], raw=b"\0" * 16), "input byte size mismatch"),
        (_grpc_request(FRAME, raw=b"\0" * frame_bytes * 4, datatype="FP32"), "expects 'UINT8'"),
        (_grpc_request(FRAME, raw=b"\0" * frame_bytes, name="x"), "unexpected inference input 'x'"),
        (_grpc_request(FRAME), "unable to find data for input tensor 'images'"),
        (_grpc_request(FRAME, raw=b"\0" * frame_bytes, model="evil\n"), "evil"),
    ]
    for request, message in grpc_cases:
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(request, timeout=10)
        assert message in error.value.details(), (message, error.value.details())
    assert len(http_cases) + 1 + len(grpc_cases) >= 20
    # 200 normal requests, answered with what the local runner gives for the same frames
    frames = np.random.default_rng(3).integers(0, 255, [4] + FRAME, dtype=np.uint8)
    with open_runner(demo_ir) as local:
        want = [local.infer(f) for f in frames]
        names = local.output_names
    client = grpcclient.InferenceServerClient("127.0.0.1:{}".format(server.grpc_port))
    for i in range(200):
        tensor = grpcclient.InferInput("images", FRAME, "UINT8")
        tensor.set_data_from_numpy(frames[i % 4])
        result = client.infer("demo", [tensor])
        for name, expected in zip(names, want[i % 4]):
            np.testing.assert_allclose(result.as_numpy(name), expected, atol=1e-4)
    client.close()
    assert server.process.poll() is None and server.process.pid == pid  # the same server, never restarted
    with open(server.log) as handle:
        assert "Signal (" not in handle.read()


def _children(pid):
    with open("/proc/{}/task/{}/children".format(pid, pid)) as handle:
        return [int(p) for p in handle.read().split()]


def _ready(port):
    with urllib.request.urlopen("http://127.0.0.1:{}/v2/health/ready".format(port), timeout=5) as reply:
        return reply.status == 200


def test_crashed_server_is_restarted_then_serve_exits_with_code_8(demo_ir, tmp_path):
    """`edgecsp serve --restarts 1 --host 0.0.0.0`: warns that it is exposed; the tritonserver killed with -9 is
    reported and started again on the same ports; killed once more, serve ends with exit code 8 and one line
    naming the log, which still holds what it held before serve appended to it."""
    from edgecsp.serving.server import free_port

    needs("tritonserver", "tritonclient")
    http_port, grpc_port = free_port(), free_port()
    log = tmp_path / "server.log"
    log.write_text("a line the user had\n")
    proc = subprocess.Popen([sys.executable, "-m", "edgecsp", "serve", "-e", demo_ir, "--model", "demo", "--host", "0.0.0.0",
                             "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--log", str(log),
                             "--restarts", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    try:
        with no_hang(240):
            warning = proc.stderr.readline()
            assert warning.startswith("edgecsp serve: warning: listening on 0.0.0.0: anyone who reaches gRPC port "
                                      "{}".format(grpc_port)) and "no authentication and no TLS" in warning, warning
            assert proc.stdout.readline().startswith("serving demo")
            first = _children(proc.pid)
            assert len(first) == 1
            os.kill(first[0], signal.SIGKILL)
            restarted = proc.stderr.readline()
            assert restarted.startswith("edgecsp serve: the Triton server stopped on its own (signal 9 (SIGKILL)); "
                                        "restarting it (1 of at most 1") and str(log) in restarted, restarted
            ready = proc.stderr.readline()
            second = _children(proc.pid)
            assert ready.startswith("edgecsp serve: the Triton server is ready again at grpc://0.0.0.0:{} (pid {})"
                                    .format(grpc_port, second[0])), ready
            assert len(second) == 1 and second != first and _ready(http_port)
            os.kill(second[0], signal.SIGKILL)
            out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 8 and len(lines) == 1, (proc.returncode, err)
    assert lines[0].startswith("edgecsp serve: error: the Triton server stopped on its own 2 times within 600 s, "
                               "last with signal 9 (SIGKILL)") and lines[0].endswith("see its log " + str(log))
    assert log.read_text().startswith("a line the user had\n")


def _leftovers():
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "edgecsp-*")))


def test_unwritable_log_fails_in_one_line_and_leaves_nothing(demo_ir, tmp_path, capsys):
    """--log in a missing folder, under a regular file (ENOTDIR), on a folder or where nothing can be created
    (/proc): InputError before the server starts, no scratch folder left in the temp folder, the file kept."""
    from edgecsp.errors import InputError
    from edgecsp.serving import serving

    needs("tritonserver")
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me\n")
    cases = [
        (tmp_path / "missing" / "server.log", "does not exist or is not a folder: create it or pass another --log"),
        (a_file / "server.log", "does not exist or is not a folder: create it or pass another --log"),
        (tmp_path, "is a folder: pass a file in it"),
        ("/proc/edgecsp-serve.log", "cannot write the server's log to --log '/proc/edgecsp-serve.log'"),
    ]
    before = _leftovers()
    for log, message in cases:
        with pytest.raises(InputError, match=message):
            with serving(demo_ir, name="demo", log_path=str(log)):
                pass
        assert _leftovers() == before, log  # no scratch repository, no server folder
        assert main(["serve", "-e", demo_ir, "--model", "demo", "--log", str(log)]) == 3, log
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        # one line from serve's own check or the CLI's check of every output path, whichever comes first
        assert len(err) == 1 and err[0].startswith("edgecsp serve: error: "), (log, err)
        assert _leftovers() == before, log
    assert a_file.read_text() == "keep me\n" and sorted(os.listdir(str(tmp_path))) == ["a_file"]


def test_bad_host_ports_and_restarts_fail_in_one_line(demo_ir, capsys):
    needs("tritonserver")
    cases = [
        (["--host", "evil\nhost"], "--host 'evil\\x0ahost' cannot be listened on"),
        (["--host", "192.0.2.1"], "--host '192.0.2.1' cannot be listened on"),  # TEST-NET-1: not this machine's
        (["--grpc-port", "70000"], "--grpc-port must be between 1 and 65535"),
        (["--http-port", "0"], "--http-port must be a positive integer"),
        (["--restarts", "-1"], "--restarts must be a non-negative integer"),
    ]
    before = _leftovers()
    for args, message in cases:
        assert main(["serve", "-e", demo_ir, "--model", "demo"] + args) == 3, args
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0], (args, err)
    assert _leftovers() == before
