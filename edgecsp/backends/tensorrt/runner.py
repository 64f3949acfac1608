"""Run a TensorRT engine with pycuda: pinned host buffers, async copies and execution on one CUDA stream.

The sidecar manifest is read and checked (TensorRT version, GPU, engine sha256) before the engine is
deserialized, so a foreign engine fails with "rebuild on this device" instead of a TensorRT crash. TensorRT
8.5+ names its I/O tensors (``execute_async_v3``); 8.2/8.4 use bindings (``execute_async_v2``): the runner
detects which. Python 3.6; numpy, tensorrt and pycuda only.
"""
import os
from typing import Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

from edgecsp._lazy import require
from edgecsp.runtime.runner import BaseRunner
from edgecsp.backends.tensorrt.device import cuda_device
from edgecsp.backends.tensorrt.logger import make_logger
from edgecsp.backends.tensorrt.manifest import (check_engine_file, check_engine_manifest, engine_meta,
                                                read_engine_manifest)
from edgecsp.errors import InputError, UnsupportedError


class TensorIO(NamedTuple):
    """One engine input or output: its name, direction, shape (-1 for dynamic) and numpy dtype."""

    name: str
    is_input: bool
    shape: Tuple[int, ...]
    dtype: str
    index: int  # binding index (bindings API) or I/O tensor index


def read_meta(path):
    """The edgecsp metadata of an engine, from its sidecar manifest (no TensorRT needed)."""
    return engine_meta(path)


def check_engine_inputs(inputs, meta, where):
    """UnsupportedError unless the engine has one input of the dtype its metadata's input form says (float32 for
    float NCHW, uint8 for the letterboxed frames of an ``--input uint8`` build)."""
    from edgecsp.runtime.meta import UINT8_NHWC_BGR

    wanted = "uint8" if meta.input_form == UINT8_NHWC_BGR else "float32"
    if len(inputs) != 1 or inputs[0].dtype != wanted:
        raise UnsupportedError("{} has inputs {}; its metadata (input form {}) says one {} input: rebuild it with "
                               "`edgecsp build`".format(where, [(t.name, t.dtype) for t in inputs], meta.input_form,
                                                        wanted))


def concrete_shape(shape, batch, where="tensor"):
    # type: (Sequence[int], int, str) -> Tuple[int, ...]
    """``shape`` with a dynamic batch (-1 in front) set to ``batch``; UnsupportedError for other dynamic dims."""
    dims = [int(d) for d in shape]
    if dims and dims[0] < 0:
        dims[0] = int(batch)
    if any(d < 0 for d in dims):
        raise UnsupportedError("{} has dynamic dimensions {} besides the batch: rebuild with a fixed input size".format(
            where, tuple(shape)))
    return tuple(dims)


def engine_max_batch(input_shape, profile_max_batch):
    # type: (Sequence[int], int) -> int
    """The largest batch an engine takes: its static batch dimension, else the profile's maximum (manifest)."""
    first = int(input_shape[0]) if len(input_shape) else -1
    return first if first > 0 else max(1, int(profile_max_batch or 1))


def check_enqueued(ok, api, where):
    """RuntimeError when ``execute_async_v2/v3`` said False: the inference was never started on the stream."""
    if not ok:
        raise RuntimeError("TensorRT could not enqueue {} for {} ({} returned False; its log above says why): "
                           "the engine, its inputs or the GPU are not in a state to run".format(where, api, api))


def plan_buffers(io, max_batch):
    # type: (Sequence[TensorIO], int) -> Dict[str, Tuple[Tuple[int, ...], str]]
    """``{name: (largest shape, dtype)}``: the host/device buffers to allocate once, for ``max_batch``."""
    return dict((t.name, (concrete_shape(t.shape, max_batch, t.name), t.dtype)) for t in io)


def describe_io(trt, engine):
    """The engine's I/O as TensorIO, through whichever API this TensorRT has."""
    found = []
    if hasattr(engine, "num_io_tensors"):  # TensorRT 8.5+
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            found.append(TensorIO(name, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                                  tuple(engine.get_tensor_shape(name)),
                                  np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name, i))
    else:
        for i in range(engine.num_bindings):
            found.append(TensorIO(engine.get_binding_name(i), engine.binding_is_input(i),
                                  tuple(engine.get_binding_shape(i)),
                                  np.dtype(trt.nptype(engine.get_binding_dtype(i))).name, i))
    return found


class TensorRTRunner(BaseRunner):
    """Runs an edgecsp-built TensorRT engine (``.engine`` + ``.engine.json``) on CUDA device ``device``."""

    def __init__(self, path, device=0, check_sha256=True):
        super(TensorRTRunner, self).__init__(path)
        self.device = int(device)
        self.check_sha256 = bool(check_sha256)
        self._cuda = self._context = self._stream = None
        self._engine = self._exec = None
        self._io = []  # type: List[TensorIO]
        self._host = {}  # type: Dict[str, object]
        self._device_mem = {}  # type: Dict[str, object]
        self._max_batch = 1

    def _activate(self):
        manifest = read_engine_manifest(self.path)
        trt = require("tensorrt", "running TensorRT engines")
        gpu = cuda_device(self.device)
        check_engine_manifest(manifest, trt.__version__, gpu.sm if gpu else None, os.path.basename(self.path))
        if self.check_sha256:
            check_engine_file(self.path, manifest)
        meta = engine_meta(self.path)
        cuda = require("pycuda.driver", "running TensorRT engines")
        cuda.init()
        self._cuda = cuda
        self._context = cuda.Device(self.device).retain_primary_context()
        self._context.push()
        try:
            self._load(trt, manifest, meta)
        finally:
            self._context.pop()  # released in _deactivate, which __enter__ calls when this fails

    def _load(self, trt, manifest, meta):
        logger = make_logger(trt)
        with open(self.path, "rb") as handle:
            self._engine = trt.Runtime(logger).deserialize_cuda_engine(handle.read())
        if self._engine is None:
            raise UnsupportedError("TensorRT {} could not deserialize {} ({}): rebuild it on this device with "
                                   "`edgecsp build`".format(trt.__version__, os.path.basename(self.path),
                                                            " | ".join(logger.errors) or "no TensorRT message"))
        self._exec = self._engine.create_execution_context()
        self._io = describe_io(trt, self._engine)
        inputs = [t for t in self._io if t.is_input]
        check_engine_inputs(inputs, meta, os.path.basename(self.path))
        shape = [None if d < 0 else d for d in inputs[0].shape]
        self._bind(meta, inputs[0].name, shape, [(t.name, t.shape) for t in self._io if not t.is_input])
        self._max_batch = engine_max_batch(inputs[0].shape, manifest.max_batch)
        for name, (shape, dtype) in plan_buffers(self._io, self._max_batch).items():
            self._host[name] = self._cuda.pagelocked_empty(int(np.prod(shape)), dtype=np.dtype(dtype))
            self._device_mem[name] = self._cuda.mem_alloc(self._host[name].nbytes)
        self._stream = self._cuda.Stream()

    def _max_batch_limit(self):
        return self._max_batch  # the optimization profile's largest batch

    def _deactivate(self):
        if self._context is not None:
            self._context.push()
            try:
                for memory in self._device_mem.values():
                    memory.free()
            finally:
                self._device_mem, self._host = {}, {}
                self._exec = self._engine = self._stream = None
                self._context.pop()
                self._context.detach()  # retain_primary_context() holds a reference until detach()
                self._context = None

    def _infer(self, batch):
        n = batch.shape[0]
        if n > self._max_batch:
            raise InputError("{} was built for batches of at most {}, got {}: rebuild with --max-batch {}".format(
                os.path.basename(self.path), self._max_batch, n, n))
        self._context.push()
        try:
            return self._run(batch)
        finally:
            self._context.pop()

    def _run(self, batch):
        cuda, stream, n = self._cuda, self._stream, batch.shape[0]
        inp = [t for t in self._io if t.is_input][0]
        host_in = self._host[inp.name][:batch.size]
        host_in[:] = batch.ravel()
        cuda.memcpy_htod_async(self._device_mem[inp.name], host_in, stream)
        shapes = {}
        if hasattr(self._exec, "set_input_shape"):  # TensorRT 8.5+: named tensors
            if inp.shape[0] < 0:
                self._exec.set_input_shape(inp.name, batch.shape)
            for t in self._io:
                self._exec.set_tensor_address(t.name, int(self._device_mem[t.name]))
                shapes[t.name] = tuple(self._exec.get_tensor_shape(t.name))
            check_enqueued(self._exec.execute_async_v3(stream_handle=stream.handle), "execute_async_v3",
                           os.path.basename(self.path))
        else:
            if inp.shape[0] < 0:
                self._exec.set_binding_shape(inp.index, batch.shape)
            for t in self._io:
                shapes[t.name] = tuple(self._exec.get_binding_shape(t.index))
            bindings = [int(self._device_mem[t.name]) for t in sorted(self._io, key=lambda t: t.index)]
            check_enqueued(self._exec.execute_async_v2(bindings=bindings, stream_handle=stream.handle),
                           "execute_async_v2", os.path.basename(self.path))
        outputs = {}
        for t in self._io:
            if t.is_input:
                continue
            shape = concrete_shape(shapes[t.name], n, t.name)
            host = self._host[t.name][:int(np.prod(shape))]
            cuda.memcpy_dtoh_async(host, self._device_mem[t.name], stream)
            outputs[t.name] = (host, shape)
        stream.synchronize()
        # copies: the pinned buffers are reused by the next call
        return [outputs[name][0].reshape(outputs[name][1]).astype(np.float32, copy=True)
                for name in self._output_names]
