"""Tiny ONNX models for the TensorRT tests, built with onnx.helper (no torch): a clean detector, and the bad
cases the lint and the FP16 check must catch."""
import numpy as np

from edgecsp.runtime.layouts.yolo_raw import HeadMeta, yolo_meta
from edgecsp.runtime.meta import META_KEY

SIZE = 32
NAMES = ["cat", "dog"]
CHANNELS = 2 * (5 + len(NAMES))


def tiny_meta():
    return yolo_meta(names=NAMES, input_size=(SIZE, SIZE), model="trt-test",
                     heads=[HeadMeta(8, [(10.0, 13.0), (16.0, 30.0)])], outputs=["p8"], extra={"opset": 13})


def _finish(nodes, inits, opset=13, domains=(), batch=1, out="p8", out_shape=None, value_info=()):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, "trt-test", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)], inits, value_info=list(value_info))
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8
    helper.set_model_props(model, {META_KEY: tiny_meta().to_json()})
    return model


def _head(prefix="images", seed=0):
    """MaxPool(8) -> 1x1 Conv: the clean detector head, from tensor ``prefix``."""
    from onnx import helper, numpy_helper

    rng = np.random.RandomState(seed)
    w = numpy_helper.from_array(rng.randn(CHANNELS, 3, 1, 1).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.randn(CHANNELS).astype(np.float32), "b")
    nodes = [helper.make_node("MaxPool", [prefix], ["pool"], kernel_shape=[8, 8], strides=[8, 8], name="pool"),
             helper.make_node("Conv", ["pool", "w", "b"], ["p8"], name="head")]
    return nodes, [w, b]


def clean_model(opset=13, batch=1):
    nodes, inits = _head()
    return _finish(nodes, inits, opset=opset, batch=batch, out_shape=[batch, CHANNELS, SIZE // 8, SIZE // 8])


def nonzero_model():
    """The clean model plus a NonZero side branch whose count feeds nothing harmful (a data-dependent op)."""
    from onnx import TensorProto, helper

    nodes, inits = _head()
    nodes += [helper.make_node("NonZero", ["pool"], ["nz"], name="mask_indices"),
              helper.make_node("Shape", ["nz"], ["nz_shape"], name="nz_shape"),
              helper.make_node("Cast", ["nz_shape"], ["nz_f"], to=TensorProto.FLOAT, name="nz_cast"),
              helper.make_node("ReduceSum", ["nz_f"], ["nz_sum"], keepdims=1, name="nz_sum"),
              helper.make_node("Mul", ["nz_sum", "zero"], ["nz_zero"], name="nz_zero"),
              helper.make_node("Add", ["p8_raw", "nz_zero"], ["p8"], name="add_zero")]
    nodes[1] = helper.make_node("Conv", ["pool", "w", "b"], ["p8_raw"], name="head")
    inits.append(helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))
    return _finish(nodes, inits, out_shape=[1, CHANNELS, SIZE // 8, SIZE // 8])


def computed_resize_model(opset=13):
    """Resize whose ``scales`` is computed at run time from the input's shape (not an initializer/Constant)."""
    from onnx import TensorProto, helper

    nodes, inits = _head()
    nodes[1] = helper.make_node("Conv", ["pool", "w", "b"], ["small"], name="head")
    nodes += [helper.make_node("Shape", ["small"], ["small_shape"], name="shape"),
              helper.make_node("Cast", ["small_shape"], ["small_shape_f"], to=TensorProto.FLOAT, name="cast"),
              helper.make_node("Div", ["small_shape_f", "small_shape_f"], ["ones"], name="ones"),
              helper.make_node("Mul", ["ones", "factor"], ["scales"], name="scales"),
              helper.make_node("Resize", ["small", "", "scales"], ["p8"], mode="nearest", name="upsample")]
    inits.append(helper.make_tensor("factor", TensorProto.FLOAT, [4], [1.0, 1.0, 1.0, 1.0]))
    return _finish(nodes, inits, opset=opset, out_shape=[1, CHANNELS, SIZE // 8, SIZE // 8])


def constant_resize_model(opset=13):
    """The same Resize with ``scales`` an initializer: fine everywhere."""
    from onnx import TensorProto, helper

    nodes, inits = _head()
    nodes[1] = helper.make_node("Conv", ["pool", "w", "b"], ["small"], name="head")
    nodes.append(helper.make_node("Resize", ["small", "", "scales"], ["p8"], mode="nearest", name="upsample"))
    inits.append(helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, 1.0, 1.0]))
    return _finish(nodes, inits, opset=opset, out_shape=[1, CHANNELS, SIZE // 8, SIZE // 8])


def custom_mish_model():
    """A darknet-converter style Mish in a custom domain between the pool and the head."""
    from onnx import helper

    nodes, inits = _head()
    nodes[0] = helper.make_node("MaxPool", ["images"], ["pool_raw"], kernel_shape=[8, 8], strides=[8, 8],
                                name="pool")
    nodes.insert(1, helper.make_node("Mish", ["pool_raw"], ["pool"], domain="com.darknet", name="mish1"))
    return _finish(nodes, inits, domains=("com.darknet",), out_shape=[1, CHANNELS, SIZE // 8, SIZE // 8])


def overflow_model():
    """Multiplies by 1e5 (values up to ~1e5 > 65504) and back by 1e-5: fine in FP32, inf in FP16."""
    from onnx import TensorProto, helper

    nodes, inits = _head()
    nodes[1] = helper.make_node("Conv", ["pool", "w", "b"], ["conv"], name="head")
    nodes += [helper.make_node("Mul", ["conv", "big"], ["scaled_up"], name="scale_up"),
              helper.make_node("Relu", ["scaled_up"], ["scaled_relu"], name="relu"),
              helper.make_node("Mul", ["scaled_relu", "small"], ["p8"], name="scale_down")]
    inits += [helper.make_tensor("big", TensorProto.FLOAT, [1], [1e5]),
              helper.make_tensor("small", TensorProto.FLOAT, [1], [1e-5])]
    return _finish(nodes, inits, out_shape=[1, CHANNELS, SIZE // 8, SIZE // 8])


def save(model, path):
    import onnx

    onnx.save(model, str(path))
    return str(path)


def write_images(folder, count=4, seed=0):
    """``count`` random BGR PNGs (odd sizes, so the letterbox pads) in ``folder``; returns the folder."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    for i in range(count):
        cv2.imwrite(str(folder / "im{}.png".format(i)), (rng.rand(24 + i, 40, 3) * 255).astype(np.uint8))
    return str(folder)
