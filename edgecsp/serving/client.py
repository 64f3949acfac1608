"""``TritonRunner``: the runner interface over a model on a Triton server (gRPC), so that ``edgecsp infer``'s
pipeline and ``edgecsp bench`` run unchanged with the network on the server.

The model's edgecsp metadata comes from its config's ``parameters`` (written by ``edgecsp package --triton`` and
``edgecsp serve``): the client needs nothing but the URL and the model name.
"""
import os
import re
import threading

from edgecsp._lazy import require
from edgecsp.runtime.runner import BaseRunner, InferHandle
from edgecsp.errors import InputError, MetadataError, ServerError
from edgecsp.runtime.meta import ModelMeta
from edgecsp.serving.triton_config import meta_from_config

SCHEME = "grpc://"
CONNECT_TIMEOUT_S = 10.0


def parse_server_url(url):
    # type: (str) -> str
    """``HOST:PORT`` of a ``grpc://HOST:PORT`` URL; InputError for anything else."""
    text = str(url or "")
    if not text.startswith(SCHEME) or ":" not in text[len(SCHEME):] or not text[len(SCHEME):].rsplit(":", 1)[1]:
        raise InputError("--server {!r} is not a gRPC URL: pass grpc://HOST:PORT (Triton's gRPC port, 8001 by "
                         "default)".format(url))
    host, port = text[len(SCHEME):].rstrip("/").rsplit(":", 1)
    # str.isdigit() also takes '²' and other digits int() refuses: only ASCII digits
    if not re.match(r"[0-9]{1,5}\Z", port) or not 0 < int(port) < 65536 or not host:
        raise InputError("--server {!r} has no valid HOST:PORT: pass grpc://HOST:PORT".format(url))
    return "{}:{}".format(host, port)


def server_spec(url, model):
    # type: (str, str) -> str
    """One string for a model on a server, ``grpc://HOST:PORT/MODEL`` (what bench jobs and configs carry);
    without ``model``, the server's only ready model (``sole_model``)."""
    address = parse_server_url(url)
    return "grpc://{}/{}".format(address, model or sole_model(url))


def ready_models(url, timeout=CONNECT_TIMEOUT_S):
    """The names of the ready models of the Triton server at ``url``, from its repository index (gRPC)."""
    grpc = require("tritonclient.grpc", "talking to a Triton server (pip extra edgecsp[serve])")
    utils = require("tritonclient.utils", "talking to a Triton server (pip extra edgecsp[serve])")
    address = parse_server_url(url)
    client = grpc.InferenceServerClient(url=address)
    try:
        index = client.get_model_repository_index(as_json=True, client_timeout=timeout)
    except utils.InferenceServerException as exc:
        raise ServerError("cannot reach the Triton server at {}: {} (is it running? start one with `edgecsp "
                          "serve ARTEFACT`)".format(address, _message(exc)))
    finally:
        client.close()
    return sorted(m["name"] for m in index.get("models", []) if m.get("name") and m.get("state") == "READY")


def sole_model(url):
    # type: (str) -> str
    """The name of the one ready model of the server at ``url``: what ``--server`` alone means. InputError listing
    them when it serves several, ServerError when it serves none."""
    models = ready_models(url)
    if len(models) == 1:
        return models[0]
    if not models:
        raise ServerError("the Triton server at {} has no ready model: check its log".format(parse_server_url(url)))
    shown = ", ".join(models[:10]) + (", ..." if len(models) > 10 else "")
    raise InputError("the Triton server at {} serves {} models ({}): pass --model NAME".format(
        parse_server_url(url), len(models), shown))


def is_server_spec(text):
    return isinstance(text, str) and text.startswith(SCHEME)


def split_server_spec(spec):
    # type: (str) -> tuple
    """``(url, model)`` of a ``grpc://HOST:PORT/MODEL`` spec."""
    rest = spec[len(SCHEME):]
    if "/" not in rest.rstrip("/"):
        raise InputError("{!r} names no model: pass grpc://HOST:PORT/MODEL, or --server URL --model NAME".format(
            spec))
    address, model = rest.split("/", 1)
    return SCHEME + address, model.strip("/")


def open_server_runner(spec, **options):
    """An unopened ``TritonRunner`` for ``grpc://HOST:PORT/MODEL``; local runner options do not apply."""
    strays = sorted(k for k, v in options.items() if v is not None)
    if strays:
        raise InputError("{} apply to local artefacts, not to a model on a server: drop them".format(
            ", ".join("--" + k.replace("_", "-") for k in strays)))
    url, model = split_server_spec(spec)
    return TritonRunner(url, model)


def _message(exc):
    text = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    return (text or type(exc).__name__).strip().splitlines()[0]


class TritonRunner(BaseRunner):
    """Runs model ``model`` of the Triton server at ``url`` (``grpc://HOST:PORT``); ``path`` is ``URL/MODEL``.

    ``submit`` uses gRPC's asynchronous infer: ``set_in_flight(k)`` keeps k requests at the server, whose dynamic
    batcher groups them.
    """

    ARTEFACT_IS_FILE = False

    def __init__(self, url, model, timeout=CONNECT_TIMEOUT_S):
        self.address = parse_server_url(url)
        self.model = str(model or "")
        if not self.model:
            raise InputError("--server needs --model NAME: the name of the model on the server")
        super(TritonRunner, self).__init__("{}/{}".format(url.rstrip("/"), self.model))
        self.timeout = float(timeout)
        self._client = None
        self._grpc = None
        self._dtype = None
        self._slots = None
        self._server_max_batch = None

    def _activate(self):
        self._grpc = require("tritonclient.grpc", "talking to a Triton server (pip extra edgecsp[serve])")
        utils = require("tritonclient.utils", "talking to a Triton server (pip extra edgecsp[serve])")
        self._client = self._grpc.InferenceServerClient(url=self.address)
        try:
            if not self._client.is_server_live(client_timeout=self.timeout):
                raise ServerError("the Triton server at {} is not live: wait for it or check its log".format(
                    self.address))
            if not self._client.is_model_ready(self.model, client_timeout=self.timeout):
                models = [m.get("name") for m in self._client.get_model_repository_index(as_json=True).get(
                    "models", [])]
                raise ServerError("the Triton server at {} has no ready model {!r} (it has {}): pass --model with "
                                  "one of them".format(self.address, self.model, ", ".join(models) or "none"))
            config = self._client.get_model_config(self.model, as_json=True, client_timeout=self.timeout)["config"]
        except utils.InferenceServerException as exc:
            raise ServerError("cannot reach the Triton server at {}: {} (is it running? start one with `edgecsp "
                              "serve ARTEFACT`)".format(self.address, _message(exc)))
        meta_json = meta_from_config(config.get("parameters", {}))
        if not meta_json:
            raise MetadataError("model {!r} on {} has no edgecsp metadata in its config parameters: package it with "
                                "`edgecsp package --triton` or serve it with `edgecsp serve`".format(
                                    self.model, self.address))
        meta = ModelMeta.from_json(meta_json, "model {!r}".format(self.model))
        self._server_max_batch = int(config.get("max_batch_size", 0)) or None
        batched = self._server_max_batch is not None
        spec = config["input"][0]
        dims = [int(d) for d in spec["dims"]]
        shape = [None] + dims if batched else dims
        self._dtype = spec["data_type"][len("TYPE_"):]
        outputs = [o["name"] for o in config["output"]]
        self._bind(meta, spec["name"], shape, outputs)
        self._requested = [self._grpc.InferRequestedOutput(n) for n in self._output_names]
        self._slots = threading.BoundedSemaphore(self._in_flight())

    def _wait_all(self):
        if self._slots is not None:
            count = self._in_flight()
            for _ in range(count):
                self._slots.acquire()
            for _ in range(count):
                self._slots.release()

    def _deactivate(self):
        if self._client is not None and self._slots is not None:
            self._wait_all()
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def _inputs(self, batch):
        tensor = self._grpc.InferInput(self._input_name, list(batch.shape), self._dtype)
        tensor.set_data_from_numpy(batch)
        return [tensor]

    def _outputs(self, result):
        return [result.as_numpy(n) for n in self._output_names]

    def _infer(self, batch):
        utils = require("tritonclient.utils", "talking to a Triton server")
        try:
            result = self._client.infer(self.model, self._inputs(batch), outputs=self._requested)
        except utils.InferenceServerException as exc:
            raise ServerError("the Triton server at {} failed model {!r}: {}".format(
                self.address, self.model, _message(exc)))
        return self._outputs(result)

    def _in_flight(self):
        return max(1, int(self._requested_in_flight or 1))

    def _max_batch_limit(self):
        return self._server_max_batch

    def _submit(self, batch):
        if not self._requested_in_flight:
            return super(TritonRunner, self)._submit(batch)
        handle = InferHandle()
        self._slots.acquire()  # at most in_flight requests at the server, as submit promises

        def done(result, error):
            self._slots.release()
            if error is not None:
                handle.set_error(ServerError("the Triton server at {} failed model {!r}: {}".format(
                    self.address, self.model, _message(error))))
                return
            try:
                handle.set_result(self._checked_outputs(self._outputs(result)))
            except Exception as exc:  # surfaced by handle.result(), in order
                handle.set_error(exc)

        try:
            self._client.async_infer(self.model, self._inputs(batch), done, outputs=self._requested)
        except Exception:
            self._slots.release()
            raise
        return handle

    def __repr__(self):
        return "TritonRunner({!r})".format(os.path.basename(self.path))
