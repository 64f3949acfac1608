"""Scale-out: Triton model repositories (``edgecsp package --triton``), a real Triton server running edgecsp's
runner (``edgecsp serve``), and the client runner that puts the network on a server (``--server``).

* ``triton_config``: the ``config.pbtxt`` decisions, pure;
* ``repository``: reading an artefact's interface and writing ``REPO/<name>/...`` whole or not at all;
* ``server``: finding, starting and stopping ``tritonserver``;
* ``triton_model``: the python-backend model that runs an artefact with edgecsp's runner inside the server;
* ``client``: ``TritonRunner``, the runner interface over gRPC.
"""
import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def serving(artefact, name=None, max_batch=None, instances=1, host="127.0.0.1", http_port=None, grpc_port=None,
            tritonserver=None, timeout=None, log_path=None):
    """``with serving(artefact) as (server, packaged):`` a Triton server on ``host`` running ``artefact`` in its
    python backend with edgecsp's runner; ``server.grpc_url`` and ``packaged.name`` are what clients need.
    The repository lives in a scratch folder, removed with the server."""
    with serving_many([artefact], None if name is None else [name], max_batch, instances, host, http_port,
                      grpc_port, tritonserver, timeout, log_path) as (server, packaged):
        yield server, packaged[0]


def model_names(artefacts, names=None):
    """The model name of each artefact on one server: ``names`` (one per artefact) or the file stems; InputError
    when the counts differ or two artefacts would get one name."""
    from edgecsp.errors import InputError
    from edgecsp.serving.triton_config import check_model_name, default_model_name

    artefacts = list(artefacts)
    if not artefacts:
        raise InputError("nothing to serve: pass one artefact or more")
    if names:
        names = list(names)
        if len(names) != len(artefacts):
            raise InputError("{} --model for {} artefacts: give one --model per artefact, in their order, or none "
                             "(the file stems)".format(len(names), len(artefacts)))
        names = [check_model_name(n) for n in names]
    else:
        names = [default_model_name(os.path.splitext(os.path.basename(str(a)))[0]) for a in artefacts]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise InputError("{} and {} would both be model {!r} on the server: give each a --model".format(
                artefacts[names.index(name)], artefacts[i], name))
    return names


@contextlib.contextmanager
def serving_many(artefacts, names=None, max_batch=None, instances=1, host="127.0.0.1", http_port=None,
                 grpc_port=None, tritonserver=None, timeout=None, log_path=None):
    """``with serving_many([a, b]) as (server, [packaged_a, packaged_b]):`` one Triton server running every
    artefact as its own model (``names``, default the file stems), each in the python backend with edgecsp's
    runner. Everything is checked, and the scratch repository written whole, before the server starts."""
    from edgecsp.serving.repository import python_repository
    from edgecsp.serving.server import READY_TIMEOUT_S, TritonServer, find_tritonserver

    names = model_names(artefacts, names)
    install = find_tritonserver(tritonserver)  # no server: fail before writing anything
    scratch = tempfile.mkdtemp(prefix="edgecsp-serve-")
    try:
        # checks the host, ports and log path before the repository is written
        server = TritonServer(os.path.join(scratch, "models"), host=host, http_port=http_port, grpc_port=grpc_port,
                              tritonserver=install.binary if tritonserver else None,
                              timeout=timeout or READY_TIMEOUT_S, log_path=log_path)
        packaged = [python_repository(os.path.join(scratch, "models"), artefact, name=name, max_batch=max_batch,
                                      instances=instances) for artefact, name in zip(artefacts, names)]
        with server:
            yield server, packaged
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def serve(artefacts, names=None, max_batch=None, instances=1, host="127.0.0.1", http_port=None, grpc_port=None,
          tritonserver=None, log_path=None, restarts=None, announce=print, report=None):
    """``edgecsp serve``: one Triton server running ``artefacts`` until Ctrl-C or SIGTERM (then it returns).

    ``announce(line)`` gets what a user runs against it; ``report(line)`` the warnings and restarts (default
    stderr). A server that stops on its own is started again at most ``restarts`` times in 10 minutes
    (``TritonServer.serve_until``). SIGTERM is how a server is stopped: the handler is put back afterwards.
    """
    import signal
    import sys
    import threading

    from edgecsp.serving.server import MAX_RESTARTS, exposure_warning
    from edgecsp.serving.triton_config import describe
    from edgecsp.validate import non_negative_int, optional, printable

    if report is None:
        def report(line):
            sys.stderr.write("edgecsp serve: {}\n".format(printable(line)))
            sys.stderr.flush()

    restarts = optional(non_negative_int, restarts, "--restarts")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with serving_many(artefacts, names=names, max_batch=max_batch, instances=instances, host=host,
                          http_port=http_port, grpc_port=grpc_port, tritonserver=tritonserver,
                          log_path=log_path) as (server, models):
            warning = exposure_warning(server.host, server.http_port, server.grpc_port)
            if warning:
                report("warning: " + warning)
            for packaged in models:
                announce("serving {} at {} (health: {}/v2/health/ready)".format(
                    describe(packaged.config), server.grpc_url, server.http_url))
            for packaged in models:  # with one model, --model may be left out
                announce("run it: edgecsp infer --server {} --model {} VIDEO".format(server.grpc_url, packaged.name))
            server.serve_until(stop, report=report, restarts=MAX_RESTARTS if restarts is None else restarts)
    finally:
        signal.signal(signal.SIGTERM, previous)

