"""``edgecsp serve ARTEFACT``: a real Triton server on this machine, running the artefact with edgecsp's runner in
Triton's python backend (dynamic batching, health at /v2/health/ready), until Ctrl-C or SIGTERM."""


def add_arguments(p):
    p.add_argument("artefact", help="an artefact built by `edgecsp build` (.xml, .onnx or TensorRT engine)")
    p.add_argument("--name", help="model name on the server (default: the artefact's file stem)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001, Triton's)")
    p.add_argument("--http-port", type=int, default=8000, help="HTTP port, health and metadata (default 8000)")
    p.add_argument("--max-batch", type=int, metavar="B", help="largest batch the dynamic batcher forms (default 8)")
    p.add_argument("--instances", type=int, default=1, metavar="K", help="model instances (default 1)")
    p.add_argument("--tritonserver", metavar="PATH", help="the tritonserver binary (default: $EDGECSP_TRITONSERVER, "
                   "nvidia-pytriton's, tritonserver on PATH, /opt/tritonserver)")
    p.add_argument("--log", metavar="FILE", help="write the server's log here (default: a scratch file)")


def run(args):
    import signal
    import threading

    from edgecsp.serving import serving
    from edgecsp.serving.triton_config import describe

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with serving(args.artefact, name=args.name, max_batch=args.max_batch, instances=args.instances,
                     host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                     tritonserver=args.tritonserver, log_path=args.log) as (server, packaged):
            print("serving {} at {} (health: {}/v2/health/ready)".format(
                describe(packaged.config), server.grpc_url, server.http_url), flush=True)
            print("run it: edgecsp infer --server {} --model {} VIDEO".format(server.grpc_url, packaged.name),
                  flush=True)
            while not stop.wait(0.5):
                if server.process.poll() is not None:
                    from edgecsp.errors import ServerError

                    raise ServerError("the Triton server stopped on its own (exit code {}){}".format(
                        server.process.returncode, ": see " + args.log if args.log else ""))
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("stopped")
    return 0
