"""``edgecsp bench --engine ARTEFACT``: latency, throughput, a video's per-stage times, and baselines side by side."""
from edgecsp.backends import artefact_help
from edgecsp.cli.options import add, alias


def add_arguments(p):
    add(p, "engine", help="artefact to measure ({}); ratios are against it".format(artefact_help()))
    p.add_argument("--server", metavar="grpc://HOST:PORT",
                   help="measure model --model on this Triton server instead of a local artefact")
    p.add_argument("--model", metavar="NAME", help="the model's name on --server (default: its only model)")
    p.add_argument("--vs", nargs="+", default=[], metavar="SPEC",
                   help="baselines measured in the same run, each in its own process, alternated: another artefact "
                        "(an FP16/INT8 build, another backend's), a model on a Triton server "
                        "(grpc://HOST:PORT/MODEL), torch:MODEL|CARD.json|CFG,WEIGHTS (PyTorch "
                        "eager on the source model), opencv:CFG,WEIGHTS (OpenCV DNN on a darknet model)")
    p.add_argument("--video", help="also run the engine on this video (pipelined and --sync): fps and ms per stage")
    p.add_argument("--max-frames", type=int, help="frames of the video runs (default: all)")
    p.add_argument("--memory", metavar="VIDEO", help="peak RSS every 1000 frames of a pipelined run over VIDEO "
                   "(e.g. `edgecsp data video long.mp4 --frames 10000 --size 144x256`)")
    p.add_argument("--seconds", type=float, default=3.0, help="per latency / throughput measurement (default 3)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--in-flight", type=int, default=3, help="requests kept running for throughput and the video "
                   "runs (default 3, as edgecsp infer)")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's)")
    p.add_argument("--rounds", type=int, default=0, help="alternation rounds (default 3 with --vs/--video, else 1)")
    p.add_argument("--nms", type=int, nargs="?", const=10000, default=0, metavar="BOXES",
                   help="also time edgecsp's NMS against cv2.dnn.NMSBoxesBatched on BOXES boxes (default 10000)")
    alias(p, "bench", "--json", "report")
    add(p, "report", metavar="FILE", help="write the full report (every round, medians, ratios, machine) as JSON")


def run(args):
    from edgecsp.bench import BenchConfig, bench, format_report

    config = BenchConfig(engine=args.engine, vs=tuple(args.vs), video=args.video, max_frames=args.max_frames,
                         seconds=args.seconds, warmup=args.warmup, in_flight=args.in_flight, threads=args.threads,
                         rounds=args.rounds, json=args.report, memory=args.memory, nms=args.nms,
                         server=args.server, model=args.model)
    report = bench(config, log=print)
    print(format_report(report))
    if args.report:
        print("report: {}".format(args.report))
    return 0
