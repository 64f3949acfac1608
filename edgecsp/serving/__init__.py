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
    from edgecsp.serving.repository import python_repository
    from edgecsp.serving.server import READY_TIMEOUT_S, TritonServer, find_tritonserver

    install = find_tritonserver(tritonserver)  # no server: fail before writing anything
    scratch = tempfile.mkdtemp(prefix="edgecsp-serve-")
    try:
        # checks the host, ports and log path before the repository is written
        server = TritonServer(os.path.join(scratch, "models"), host=host, http_port=http_port, grpc_port=grpc_port,
                              tritonserver=install.binary if tritonserver else None,
                              timeout=timeout or READY_TIMEOUT_S, log_path=log_path)
        packaged = python_repository(os.path.join(scratch, "models"), artefact, name=name, max_batch=max_batch,
                                     instances=instances)
        with server:
            yield server, packaged
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
