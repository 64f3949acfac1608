"""The trtexec line equivalent to an edgecsp device build, per TensorRT version."""
from edgecsp.backends.tensorrt.host.trtexec import format_command, trtexec_args, workspace_flag


def test_workspace_flag_follows_the_tensorrt_version():
    assert workspace_flag("8.2.1", 1024) == "--workspace=1024"
    assert workspace_flag("8.5.2", 512) == "--memPoolSize=workspace:512"
    assert workspace_flag("8.6.2", 2048) == "--memPoolSize=workspace:2048M"
    assert workspace_flag("10.3.0", 64) == "--memPoolSize=workspace:64M"


def test_fp16_line_for_tx2():
    args = trtexec_args("model.onnx", "model-tx2-fp16.engine", "8.2.1", "fp16", 1024)
    assert format_command(args) == ("trtexec --onnx=model.onnx --saveEngine=model-tx2-fp16.engine --fp16 "
                                    "--workspace=1024")


def test_fp32_line_has_no_precision_flags():
    assert trtexec_args("m.onnx", "m.engine", "10.0.1", "fp32", 256) == [
        "trtexec", "--onnx=m.onnx", "--saveEngine=m.engine", "--memPoolSize=workspace:256M"]


def test_int8_dla_fp32_layers_timing_cache_and_dynamic_batch():
    args = trtexec_args("m.onnx", "m.engine", "8.5.2", "int8", 1024, calib_cache="calib.cache",
                        fp32_layers=["/head/Mul", "relu"], dla_core=1, timing_cache="t.timing", input_name="images",
                        input_shape=[None, 3, 64, 64], max_batch=4)
    assert args[3:] == ["--fp16", "--int8", "--calib=calib.cache", "--memPoolSize=workspace:1024",
                        "--minShapes=images:1x3x64x64", "--optShapes=images:4x3x64x64", "--maxShapes=images:4x3x64x64",
                        "--precisionConstraints=obey", "--layerPrecisions=/head/Mul:fp32,relu:fp32",
                        "--layerOutputTypes=/head/Mul:fp32,relu:fp32", "--useDLACore=1", "--allowGPUFallback",
                        "--timingCacheFile=t.timing"]


def test_tensorrt_82_trtexec_cannot_pin_layers():
    args = trtexec_args("m.onnx", "m.engine", "8.2.1", "fp16", 1024, fp32_layers=["relu"])
    assert not any(a.startswith("--layerPrecisions") for a in args)


def test_paths_with_spaces_are_quoted():
    line = format_command(trtexec_args("my model.onnx", "out.engine", "8.2.1", "fp16", 1024))
    assert "'--onnx=my model.onnx'" in line
