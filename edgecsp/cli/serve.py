"""``edgecsp serve ARTEFACT [ARTEFACT ...]``: a real Triton server on this machine, running each artefact as its own
model with edgecsp's runner in Triton's python backend (dynamic batching, health at /v2/health/ready), until Ctrl-C
or SIGTERM."""
from edgecsp._files import READS, WRITES
from edgecsp.cli.options import add, alias, from_legacy, legacy_positional

# what serve reads and writes: the CLI checks that --log replaces none of it (edgecsp._files.check_paths)
PATHS = (("engine", "--engine", READS), ("legacy", "ARTEFACT", READS), ("log", "--log", WRITES))


def add_arguments(p):
    legacy_positional(p, "ARTEFACT")
    add(p, "engine", action="append", help="artefact(s) built by `edgecsp build` (.xml, .onnx or TensorRT "
                                               "engine): each is one model on the server")
    alias(p, "serve", "--name", "model", append=True)
    add(p, "model", action="append", metavar="NAME", help="model name on the server, once per artefact in their order "
                                                   "(default: each artefact's file stem)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all: "
                   "no authentication, no TLS)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001, Triton's)")
    p.add_argument("--http-port", type=int, default=8000, help="HTTP port: health, metadata, config, statistics; "
                   "inference is on gRPC (default 8000)")
    p.add_argument("--max-batch", type=int, metavar="B", help="largest batch the dynamic batcher forms (default 8)")
    p.add_argument("--instances", type=int, default=1, metavar="K", help="model instances (default 1)")
    p.add_argument("--tritonserver", metavar="PATH", help="the tritonserver binary (default: $EDGECSP_TRITONSERVER, "
                   "nvidia-pytriton's, tritonserver on PATH, /opt/tritonserver)")
    p.add_argument("--restarts", type=int, metavar="N", help="start a server that stops on its own "
                   "again, at most N times in 10 minutes; one more stop ends serve with exit code 8 (default 3)")
    p.add_argument("--log", metavar="FILE", help="append the server's log to FILE (default: a scratch file, kept "
                   "only when the server stops on its own)")


def run(args):
    from edgecsp.serving import serve

    from_legacy(args, "serve", many=True)
    serve(args.engine, names=args.model, max_batch=args.max_batch, instances=args.instances, host=args.host,
          http_port=args.http_port, grpc_port=args.grpc_port, tritonserver=args.tritonserver, log_path=args.log,
          restarts=args.restarts, announce=lambda line: print(line, flush=True))
    print("stopped")
    return 0
