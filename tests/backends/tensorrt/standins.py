"""Stand-ins for tensorrt and pycuda.driver that are exactly as strict as the real bindings of one version.

Built from the API surfaces in ``surfaces/`` (scripts/trt_api_surface.py): every attribute read or written, every
call and every keyword argument is checked against the surface of that TensorRT version, so a misspelt method,
a property that version lacks, or a wrong argument name fails here as it would on the device. Behaviour (what a
call returns) comes from small fakes below that emulate a TensorRT whose engine computes ``2 * x + 1`` per
output element; the fakes decide nothing the surface allows or forbids.
"""
import json
import os

import numpy as np

SURFACES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "surfaces")
# the TensorRT versions the targets claim, with the surface each is checked against
VERSIONS = {"8.2": "tensorrt-8.2.json", "8.5": "tensorrt-8.5.json", "8.6": "tensorrt-8.6.json",
            "10.3": "tensorrt-10.3.json"}
FULL_VERSIONS = {"8.2": "8.2.1.8", "8.5": "8.5.2.2", "8.6": "8.6.1.6", "10.3": "10.3.0.26"}


def load_surface(name):
    with open(os.path.join(SURFACES, name)) as handle:
        return json.load(handle)


class SurfaceError(AttributeError):
    """A name or argument the real bindings of this version do not have."""


def members_of(surface, cls):
    """``{member: entry}`` of ``cls`` with its bases' (pybind11 bases are Python bases)."""
    found = {}
    entry = surface["classes"].get(cls)
    if entry is None:
        raise SurfaceError("{} {} has no class {}".format(_label(surface), "API", cls))
    for base in entry["bases"]:
        found.update(members_of(surface, base))
    found.update(entry["members"])
    return found


def _label(surface):
    return "tensorrt {}".format(surface["tensorrt"]) if "tensorrt" in surface else "pycuda {}".format(
        surface.get("pycuda"))


def check_call(surface, where, entry, args, kwargs):
    """SurfaceError when keyword names or the positional count do not fit the member's (overloaded) arguments."""
    overloads = entry.get("overloads") or [entry.get("args") or []]
    for names in overloads:
        if all(k in names for k in kwargs) and (len(args) <= len(names) or not names):
            if not kwargs or names:
                return
    raise SurfaceError("{}: {}({}) does not match its arguments {}".format(
        _label(surface), where, ", ".join(["<{}>".format(len(args))] + sorted(kwargs)), overloads))


class Strict(object):
    """An object of class ``cls``: reads, writes and calls are checked against the surface, then go to ``impl``.

    ``impl`` supplies behaviour (methods, or values of properties); a property the surface has but ``impl``
    does not set reads as what was last assigned (or None); a method without behaviour records the call and
    returns None. ``calls`` is the shared log of (class, member, args, kwargs).
    """

    def __init__(self, surface, cls, impl, calls):
        object.__setattr__(self, "_s", (surface, cls, impl, calls, members_of(surface, cls), {}))

    def __getattr__(self, name):
        surface, cls, impl, calls, members, values = object.__getattribute__(self, "_s")
        entry = members.get(name)
        if entry is None:
            raise SurfaceError("{} {} has no attribute {!r}".format(_label(surface), cls, name))
        if entry["kind"] in ("method", "static"):
            behaviour = getattr(impl, name, None)

            def call(*args, **kwargs):
                check_call(surface, "{}.{}".format(cls, name), entry, args, kwargs)
                calls.append((cls, name, args, kwargs))
                return behaviour(*args, **kwargs) if behaviour is not None else None
            return call
        if name in values:
            return values[name]
        return getattr(impl, name, None)

    def __setattr__(self, name, value):
        surface, cls, impl, calls, members, values = object.__getattribute__(self, "_s")
        entry = members.get(name)
        if entry is None or entry["kind"] != "property":
            raise SurfaceError("{} {} has no settable property {!r} ({})".format(
                _label(surface), cls, name, entry["kind"] if entry else "absent"))
        calls.append((cls, name + "=", (value,), {}))
        values[name] = value
        if hasattr(impl, "on_set"):
            impl.on_set(name, value)

    def __int__(self):  # pycuda's DeviceAllocation, TensorRT enums
        surface, cls, impl, calls, members, values = object.__getattribute__(self, "_s")
        if "__int__" not in members:
            raise SurfaceError("{} {} cannot be converted with int()".format(_label(surface), cls))
        return int(impl.__int__())


class EnumValue(object):
    def __init__(self, enum, name, number):
        self.enum, self.name, self.value = enum, name, number

    def __int__(self):
        return self.value

    def __index__(self):
        return self.value

    def __eq__(self, other):
        return isinstance(other, EnumValue) and (other.enum, other.name) == (self.enum, self.name)

    def __hash__(self):
        return hash((self.enum, self.name))

    def __repr__(self):
        return "<{}.{}: {}>".format(self.enum, self.name, self.value)


# the C++ values where edgecsp compares them (everything else is numbered in name order)
ORDER = {"Severity": ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"]}


class StrictEnum(object):
    def __init__(self, surface, name):
        object.__setattr__(self, "_s", (surface, name))
        values = [m for m, e in surface["classes"][name]["members"].items() if e["kind"] == "value"]
        order = ORDER.get(name.rsplit(".", 1)[-1])
        values = [v for v in order if v in values] if order else sorted(values)
        object.__setattr__(self, "_values", dict((m, EnumValue(name, m, i)) for i, m in enumerate(values)))

    def __getattr__(self, name):
        surface, enum = object.__getattribute__(self, "_s")
        values = object.__getattribute__(self, "_values")
        if name not in values:
            raise SurfaceError("{} {} has no member {!r}".format(_label(surface), enum, name))
        return values[name]


def make_subclassable(surface, cls, calls):
    """A real Python class standing for ``cls`` (ILogger, the INT8 calibrators), which edgecsp subclasses.

    ``check_overrides(instance)`` says which methods a subclass defines that the base does not have: TensorRT
    would never call a misspelt override.
    """
    members = members_of(surface, cls)

    class Base(object):
        _surface, _cls, _members = surface, cls, members

        def __init__(self, *args, **kwargs):
            check_call(surface, cls + ".__init__", members.get("__init__", {"args": []}), args, kwargs)

        def __getattr__(self, name):
            if name in members and members[name]["kind"] == "value":
                return EnumValue(cls, name, 0)
            raise SurfaceError("{} {} has no attribute {!r}".format(_label(surface), cls, name))

    for nested in [c for c in surface["classes"] if c.startswith(cls + ".")]:
        enum = StrictEnum(surface, nested)
        setattr(Base, nested.split(".", 1)[1], enum)
        for name, entry in members.items():  # export_values(): the enum's values on the class too
            if entry["kind"] == "value" and name in surface["classes"][nested]["members"]:
                setattr(Base, name, getattr(enum, name))
    Base.__name__ = cls
    return Base


def check_overrides(instance):
    """The public methods ``type(instance)`` defines beyond its stand-in base that the base's surface lacks."""
    base = [b for b in type(instance).__mro__ if hasattr(b, "_members")][0]
    own = [n for k in type(instance).__mro__ if k not in (base, object) and not hasattr(k, "_members")
           for n, v in vars(k).items() if callable(v) and not n.startswith("_")]
    return sorted(n for n in own if n not in base._members)


# -- behaviour ------------------------------------------------------------------------------------------------
class Memory(object):
    """Device memory of the fake GPU: allocations are numbered and hold numpy bytes."""

    def __init__(self):
        self.blocks = {}
        self.next = 4096
        self.freed = []

    def alloc(self, nbytes):
        pointer = self.next
        self.next += int(nbytes) + 4096
        self.blocks[pointer] = np.zeros(int(nbytes), np.uint8)
        return pointer


class FakeCuda(object):
    """pycuda.driver over Memory; contexts count their pushes, pops and detaches."""

    def __init__(self, surface, memory=None):
        self.surface, self.memory, self.calls = surface, memory or Memory(), []
        self.stack, self.retained, self.detached = [], 0, 0

    def module(self):
        cuda = self

        class Allocation(object):
            def __init__(self, pointer):
                self.pointer = pointer

            def __int__(self):
                return self.pointer

            def free(self):
                cuda.memory.freed.append(self.pointer)

        class Context(object):
            def push(self):
                cuda.stack.append(self)

            def pop(self):
                cuda.stack.pop()

            def detach(self):
                cuda.detached += 1

        class Device(object):
            def __init__(self, number):
                self.number = number

            def retain_primary_context(self):
                cuda.retained += 1
                return Strict(cuda.surface, "Context", Context(), cuda.calls)

        class Stream(object):
            handle = 777

            def synchronize(self):
                pass

        def copy_in(dest, src, stream=None):
            data = np.ascontiguousarray(src).view(np.uint8).ravel()
            cuda.memory.blocks[int(dest)][:data.size] = data

        def copy_out(dest, src, stream=None):
            view = dest.view(np.uint8).ravel()
            view[:] = cuda.memory.blocks[int(src)][:view.size]

        functions = {
            "init": lambda flags=0: None,
            "mem_alloc": lambda bytesize: Strict(cuda.surface, "DeviceAllocation",
                                                 Allocation(cuda.memory.alloc(bytesize)), cuda.calls),
            "pagelocked_empty": lambda shape, dtype, order="C", mem_flags=0: np.empty(shape, dtype),
            "memcpy_htod": copy_in, "memcpy_htod_async": copy_in, "memcpy_dtoh_async": copy_out,
            "memcpy_dtoh": copy_out,
            "Device": lambda number: Strict(cuda.surface, "Device", Device(number), cuda.calls),
            "Stream": lambda flags=0: Strict(cuda.surface, "Stream", Stream(), cuda.calls),
        }
        return StrictModule(self.surface, functions, self.calls, pycuda=True)


class StrictModule(object):
    """A module whose attributes are the surface's module names; ``impls`` gives their behaviour."""

    def __init__(self, surface, impls, calls, pycuda=False, extra=None):
        object.__setattr__(self, "_s", (surface, impls, calls, pycuda, dict(extra or {})))

    def __getattr__(self, name):
        surface, impls, calls, pycuda, extra = object.__getattribute__(self, "_s")
        if name in extra:
            return extra[name]
        kind = surface["module"].get(name)
        if kind is None:
            raise SurfaceError("{} has no attribute {!r}".format(_label(surface), name))
        if kind == "enum":
            return StrictEnum(surface, name)
        if name not in impls:
            raise SurfaceError("the stand-in for {} does not emulate {!r} (a test needs it)".format(
                _label(surface), name))
        impl = impls[name]
        if pycuda and kind == "function":
            args = surface["functions"][name]

            def call(*a, **k):
                check_call(surface, name, {"args": args}, a, k)
                calls.append(("pycuda.driver", name, a, k))
                return impl(*a, **k)
            return call
        return impl


class FakeTensorRT(object):
    """tensorrt of one version: Builder/Network/Config/Runtime/Engine/Context fakes behind Strict proxies.

    The engine maps its input ``x`` to every output as ``2 * x + 1`` over the output's first elements (``io``:
    ``(name, is_input, shape[, DataType name])``, FLOAT when the type is left out); ``build_ok`` False makes
    build_serialized_network fail after logging ``build_errors``; ``plan`` is what it serializes, and
    deserialize_cuda_engine returns None (logging an error) for any other bytes; a dynamic batch's profile is
    1..``max_batch``.
    """

    def __init__(self, version, io, memory=None, build_ok=True, build_errors=(), enqueue_ok=True, layers=(),
                 plan=b"engine-bytes", max_batch=1):
        self.surface = load_surface(VERSIONS[version])
        self.version = FULL_VERSIONS[version]
        self.io, self.memory = io, memory or Memory()
        self.build_ok, self.build_errors, self.enqueue_ok = build_ok, list(build_errors), enqueue_ok
        self.plan, self.max_batch = plan, max_batch
        self.layers = list(layers)  # (name, [output names]) of the parsed network
        self.calls = []
        self.profiles, self.configs, self.loggers = [], [], []
        self.named = "num_io_tensors" in members_of(self.surface, "ICudaEngine")

    def strict(self, cls, impl):
        return Strict(self.surface, cls, impl, self.calls)

    def module(self):
        trt = self
        base_logger = make_subclassable(self.surface, "ILogger", self.calls)
        classes = dict((name, make_subclassable(self.surface, name, self.calls))
                       for name in ("IInt8EntropyCalibrator2", "IInt8EntropyCalibrator", "IInt8MinMaxCalibrator")
                       if name in self.surface["classes"])

        class Layer(object):
            def __init__(self, name, outputs):
                self.name, self._outputs, self.num_outputs = name, outputs, len(outputs)
                self.types = {}

            def get_output(self, index):
                return trt.strict("ITensor", type("T", (), {"name": self._outputs[index]})())

            def set_output_type(self, index, dtype):
                self.types[index] = dtype

        class Network(object):
            def __init__(self):
                self._layers = [trt.strict("ILayer", Layer(n, o)) for n, o in trt.layers]
                self.num_layers = len(self._layers)

            def get_layer(self, index):
                return self._layers[index]

        class Parser(object):
            num_errors = 0

            def parse_from_file(self, model):
                return os.path.isfile(model)

        class Profile(object):
            def __init__(self):
                self.shapes = {}
                trt.profiles.append(self)

            def set_shape(self, input, min, opt, max):  # noqa: A002 (TensorRT's own argument names)
                self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

        class Config(object):
            def __init__(self):
                self.flags, self.pools, self.calibration_profile, self.timing = [], {}, None, None
                trt.configs.append(self)

            def set_flag(self, flag):
                self.flags.append(flag)

            def set_memory_pool_limit(self, pool, pool_size):
                self.pools[pool] = pool_size

            def set_calibration_profile(self, profile):
                self.calibration_profile = profile

            def create_timing_cache(self, serialized_timing_cache):
                return trt.strict("ITimingCache", type("C", (), {"serialize": lambda s: b"timing"})())

            def set_timing_cache(self, cache, ignore_mismatch):
                self.timing = cache
                return True

            def get_timing_cache(self):
                return self.timing

        class Builder(object):
            def create_network(self, flags=0):
                return trt.strict("INetworkDefinition", Network())

            def create_builder_config(self):
                return trt.strict("IBuilderConfig", Config())

            def create_optimization_profile(self):
                return trt.strict("IOptimizationProfile", Profile())

            def build_serialized_network(self, network, config):
                calibrator = getattr(config, "int8_calibrator", None)
                if calibrator is not None:  # a cache the calibrator hands over is used as it is; else TensorRT
                    size = calibrator.get_batch_size()  # pulls batches until the calibrator has no more
                    cache = calibrator.read_calibration_cache()
                    trt.calls.append(("calibrator", "read_calibration_cache", (cache,), {}))
                    if not cache:
                        inputs = [name for name, is_input, _ in [t[:3] for t in trt.io] if is_input]
                        while calibrator.get_batch(inputs) is not None:
                            pass
                        calibrator.write_calibration_cache(b"TRT-cache\n")
                    assert size >= 1
                if not trt.build_ok:
                    for logger in trt.loggers:
                        for message in trt.build_errors:
                            logger.log(base_logger.ERROR, message)
                    return None
                return trt.plan

        class Engine(object):
            def __init__(self):
                io = trt.io
                if trt.named:
                    self.num_io_tensors = len(io)
                else:
                    self.num_bindings = len(io)

            def get_tensor_name(self, index):
                return trt.io[index][0]

            def get_tensor_mode(self, name):
                mode = trt.module_enum("TensorIOMode")
                return mode.INPUT if dict((n, i) for n, i, _ in trt.io)[name] else mode.OUTPUT

            def get_tensor_shape(self, name):
                return dict((n, s) for n, _, s in trt.io)[name]

            def get_tensor_dtype(self, name):
                return trt.dtype_of([t for t in trt.io if t[0] == name][0])

            def get_tensor_profile_shape(self, name, profile_index):
                return trt.profile_of([t for t in trt.io if t[0] == name][0])

            def get_profile_shape(self, profile_index, binding):
                return trt.profile_of(trt.io[binding] if not isinstance(binding, str) else
                                      [t for t in trt.io if t[0] == binding][0])

            def get_binding_name(self, index):
                return trt.io[index][0]

            def binding_is_input(self, index):
                return trt.io[index][1]

            def get_binding_shape(self, index):
                return trt.io[index][2]

            def get_binding_dtype(self, index):
                return trt.dtype_of(trt.io[index])

            def create_execution_context(self):
                return trt.strict("IExecutionContext", Context())

        class Context(object):
            def __init__(self):
                self.addresses, self.shapes = {}, {}

            def _shape(self, name):
                shape = list(dict((n, s) for n, _, s in trt.io)[name])
                if shape[0] < 0:
                    shape[0] = self.shapes.get("batch", 1)
                return tuple(shape)

            def set_input_shape(self, name, shape):
                self.shapes["batch"] = shape[0]
                return True

            def set_binding_shape(self, binding, shape):
                self.shapes["batch"] = shape[0]
                return True

            def set_tensor_address(self, name, memory):
                self.addresses[name] = int(memory)
                return True

            def get_tensor_shape(self, name):
                return self._shape(name)

            def get_binding_shape(self, binding):
                return self._shape(trt.io[binding][0])

            def _run(self, addresses):
                names = [n for n, _, _ in trt.io]
                inputs = [n for n, is_input, _ in trt.io if is_input]
                x = trt.memory.blocks[addresses[inputs[0]]].view(np.float32)
                for name in names:
                    if name in inputs:
                        continue
                    out = trt.memory.blocks[addresses[name]].view(np.float32)
                    count = int(np.prod(self._shape(name)))
                    out[:count] = 2.0 * x[:count] + 1.0
                return trt.enqueue_ok

            def execute_async_v3(self, stream_handle):
                return self._run(self.addresses)

            def execute_async_v2(self, bindings, stream_handle):
                return self._run(dict((trt.io[i][0], int(b)) for i, b in enumerate(bindings)))

        class Runtime(object):
            def __init__(self, logger):
                self.logger = logger

            def deserialize_cuda_engine(self, serialized_engine):
                if bytes(serialized_engine) != trt.plan:
                    self.logger.log(base_logger.ERROR, "1: [stdArchiveReader.cpp::StdArchiveReader::40] Error Code 1: "
                                                       "Serialization (Serialization assertion failed.)")
                    return None
                return trt.strict("ICudaEngine", Engine())

        def logger_factory(min_severity=None):
            return trt.strict("Logger", type("L", (), {"log": lambda s, severity, msg: None})())

        def builder_factory(logger):
            trt.loggers.append(logger)
            return trt.strict("Builder", Builder())

        impls = dict(classes, ILogger=base_logger, Logger=logger_factory, Builder=builder_factory,
                     OnnxParser=lambda network, logger: trt.strict("OnnxParser", Parser()),
                     Runtime=lambda logger: trt.strict("Runtime", Runtime(logger)),
                     nptype=lambda trt_type: NPTYPES[trt_type.name], float32=trt.module_enum("DataType").FLOAT)
        module = StrictModule(self.surface, impls, self.calls, extra={"__version__": self.version})
        return module

    def module_enum(self, name):
        return StrictEnum(self.surface, name)

    def dtype_of(self, tensor):
        return getattr(self.module_enum("DataType"), tensor[3] if len(tensor) > 3 else "FLOAT")

    def profile_of(self, tensor):
        """``(min, opt, max)`` of the first optimization profile: the batch runs 1..max_batch."""
        shape = tuple(tensor[2])
        if not shape or shape[0] >= 0:
            return (shape, shape, shape)
        return tuple((batch,) + shape[1:] for batch in (1, self.max_batch, self.max_batch))


NPTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "UINT8": np.uint8,
           "BOOL": np.bool_}  # tensorrt.nptype
