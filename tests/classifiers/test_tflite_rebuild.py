"""Tests of cdgan_tf.classifiers.tflite_rebuild: the differentiable float rebuild of TFLite models.

Tiny Keras models covering every supported op are converted with TFLiteConverter to a
float32, a float16-weight and a full-integer (uint8 in / uint8 out, int8 inside, per-
channel weights) TFLite file, and the rebuild is compared with the interpreter (without
its XNNPACK delegate, keeping every intermediate tensor readable). The converter turns a
squeeze into a RESHAPE, so one RESHAPE is rewritten into a SQUEEZE in the flatbuffer.
The real-data test runs the real quantized MobileNet-v2 from ../shared.
"""

import os

import flatbuffers
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema

from cdgan_tf.classifiers import tflite_rebuild
from cdgan_tf.classifiers.tflite_rebuild import TFLiteRebuild
from cdgan_tf.classifiers.tflite_rebuild import TFLiteRebuildError

litert = pytest.importorskip("ai_edge_litert.interpreter")
# The converter warns that a uint8 input has no user statistics; calibration covers it.
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")

SIZE = 12
NUM_CLASSES = 10
MAIN_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "AVERAGE_POOL_2D", "MAX_POOL_2D",
            "MEAN", "PAD", "RESHAPE", "SQUEEZE", "CONCATENATION", "FULLY_CONNECTED",
            "SOFTMAX", "LOGISTIC"}
MOBILENET_V2 = "models/tflite/mobilenet_v2_1.0_224_quant.tflite"


# ----------------------------------------------------------------------------------
# Models and the interpreter


def _scale_channels(model):
  """Spreads each kernel's output channels over 0.25x..2x, so per-channel scales differ."""
  for layer in model.layers:
    if layer.weights:
      kernel = layer.weights[0]
      value = kernel.numpy()
      kernel.assign(value * np.linspace(0.25, 2.0, value.shape[-1]).astype(np.float32))
  return model


def main_model():
  """Conv (strided, dilated), depthwise x2, add, pad+maxpool, avgpool, swish, mean,
  squeeze, flatten, concat, dense, softmax on a 12x12 RGB image; nonzero biases."""
  keras.utils.set_random_seed(0)
  layers = keras.layers

  def bias(seed):
    return keras.initializers.RandomNormal(stddev=0.3, seed=seed)

  inputs = keras.Input((SIZE, SIZE, 3), batch_size=1)
  x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu",
                    bias_initializer=bias(1))(inputs)
  a = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu6",
                             bias_initializer=bias(2))(x)
  b = layers.Conv2D(16, 1, bias_initializer=bias(3))(x)
  x = layers.Add()([a, b])
  p = layers.MaxPooling2D(2)(layers.ZeroPadding2D(1)(x))
  s = layers.GlobalAveragePooling2D(keepdims=True)(p)
  s = layers.Lambda(lambda t: tf.squeeze(t, axis=[1, 2]))(s)  # Becomes RESHAPE.
  q = layers.Flatten()(layers.AveragePooling2D(3, strides=2, padding="same")(x))
  y = layers.Conv2D(8, 3, dilation_rate=2, padding="same", bias_initializer=bias(4))(x)
  y = layers.GlobalAveragePooling2D()(layers.Multiply()([y, layers.Activation("sigmoid")(y)]))
  x = layers.Concatenate()([y, s, q])
  outputs = layers.Dense(NUM_CLASSES, activation="softmax", bias_initializer=bias(5))(x)
  model = _scale_channels(keras.Model(inputs, outputs))
  for layer in model.layers:  # Large enough that RELU6 clips (above 6) in the float model.
    if isinstance(layer, layers.DepthwiseConv2D):
      layer.weights[0].assign(layer.weights[0] * 20.0)
  return model


def smooth_model():
  """No ReLU anywhere (conv, depthwise, avgpool, sigmoid, dense): for finite differences."""
  keras.utils.set_random_seed(1)
  layers = keras.layers
  inputs = keras.Input((8, 8, 3), batch_size=1)
  x = layers.Conv2D(4, 3, padding="same")(inputs)
  x = layers.DepthwiseConv2D(3)(x)
  x = layers.Activation("sigmoid")(layers.AveragePooling2D(2)(x))
  outputs = layers.Dense(5)(layers.Flatten()(x))
  return keras.Model(inputs, outputs)


def convert(model, path, kind="float32"):
  """Writes `model` as a float32, float16-weight or full-integer (uint8 or int8 in and
  out, int8 inside) TFLite file."""
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  if kind == "float16":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
  elif kind in ("uint8", "int8"):
    shape = model.input_shape[1:]

    def representative():
      # Inputs in [-1, 1] as for MobileNet: uint8 input zero point 128, scale 2 / 255.
      rng = np.random.default_rng(0)
      for _ in range(32):
        yield [rng.uniform(-1.0, 1.0, (1, *shape)).astype(np.float32)]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = getattr(tf, kind)
  with open(path, "wb") as f:
    f.write(converter.convert())
  return str(path)


def edit_flatbuffer(path, edit):
  """Applies edit(schema.ModelT) to a TFLite file in place."""
  with open(path, "rb") as f:
    model = schema.ModelT.InitFromPackedBuf(f.read(), 0)
  edit(model)
  builder = flatbuffers.Builder(1024)
  builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
  with open(path, "wb") as f:
    f.write(builder.Output())


def _builtin(model, op):
  code = model.operatorCodes[op.opcodeIndex]
  return max(code.builtinCode, code.deprecatedBuiltinCode)


def reshape_to_squeeze(model):
  """Turns the RESHAPE of a [1, 1, 1, C] tensor into SQUEEZE(squeeze_dims=[1, 2])."""
  subgraph = model.subgraphs[0]
  for op in subgraph.operators:
    shape = list(subgraph.tensors[op.inputs[0]].shape)
    if _builtin(model, op) == schema.BuiltinOperator.RESHAPE and shape[1:3] == [1, 1]:
      code = schema.OperatorCodeT()
      code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.SQUEEZE
      model.operatorCodes.append(code)
      op.opcodeIndex = len(model.operatorCodes) - 1
      op.inputs = list(op.inputs[:1])
      op.builtinOptionsType = schema.BuiltinOptions.SqueezeOptions
      op.builtinOptions = schema.SqueezeOptionsT()
      op.builtinOptions.squeezeDims = [1, 2]
      return
  raise AssertionError("no RESHAPE of a [1, 1, 1, C] tensor to rewrite")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """{"float32" | "float16" | "uint8" | "int8": path} of the main model; "smooth": a
  float32 smooth_model."""
  folder = tmp_path_factory.mktemp("tflite")
  model = main_model()
  paths = {}
  for kind in ("float32", "float16", "uint8", "int8"):
    paths[kind] = convert(model, folder / f"main_{kind}.tflite", kind)
    edit_flatbuffer(paths[kind], reshape_to_squeeze)
  paths["smooth"] = convert(smooth_model(), folder / "smooth.tflite")
  return paths


def interpret(path, images, tensors=()):
  """Runs the interpreter image by image; returns the real (dequantized) output [N, ...]
  and the real values of `tensors` (indices) as a list."""
  interpreter = litert.Interpreter(
      model_path=path, experimental_preserve_all_tensors=True,
      experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  interpreter.allocate_tensors()
  details = interpreter.get_tensor_details()
  inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
  wanted = [out["index"], *tensors]
  results = [[] for _ in wanted]
  for image in images:
    if inp["dtype"] in (np.uint8, np.int8):  # Pixels round(255 x), shifted for int8.
      image = np.round(image * 255.0) + np.iinfo(inp["dtype"]).min
    interpreter.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
    interpreter.invoke()
    for result, index in zip(results, wanted):
      result.append(interpreter.get_tensor(index)[0])
  real = []
  for result, index in zip(results, wanted):
    scale, zero_point = details[index]["quantization"]
    values = np.stack(result).astype(np.float32)
    real.append((values - zero_point) * scale if scale else values)
  return real[0], real[1:]


def pixels(n, size=SIZE, seed=0):
  """float32 [n, size, size, 3] images on the uint8 grid (k / 255)."""
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, size, size, 3)) / 255.0).astype(np.float32)


# ----------------------------------------------------------------------------------
# Forward agreement


@pytest.mark.parametrize("kind", ["float32", "float16"])
def test_float_model_matches_interpreter(files, kind):
  model = TFLiteRebuild(files[kind])
  assert MAIN_OPS <= set(model.op_names)
  assert (model.input_size, model.input_channels) == ((SIZE, SIZE), 3)
  assert model.input_dtype == np.float32 and model.input_quantization is None
  assert model.ends_in_softmax and model.num_outputs == NUM_CLASSES
  images = pixels(4)
  probabilities, (logits,) = interpret(files[kind], images,
                                       [model.tensor_index(model.logits_tensor)])
  np.testing.assert_allclose(model(images).numpy(), logits, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(model(images[:1]).numpy(), logits[:1], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(model.features(images, model.output_tensor.name).numpy(),
                             probabilities, atol=1e-6)


def _steps(rebuilt, reference, scale):
  error = np.abs(np.asarray(rebuilt) - reference) / scale
  return float(error.max()), float(error.mean())


@pytest.mark.parametrize("kind", ["uint8", "int8"])
def test_quantized_model_matches_interpreter(files, kind):
  """Logits, probabilities and an intermediate within a few quantization steps; the
  fake-quant rebuild closer than the plain one."""
  path = files[kind]
  plain, fake = TFLiteRebuild(path), TFLiteRebuild(path, fake_quant=True)
  # uint8 in / out: QUANTIZE ops convert to and from int8; int8 needs none.
  assert MAIN_OPS | ({"QUANTIZE"} if kind == "uint8" else set()) <= set(plain.op_names)
  assert plain.input_dtype == kind and plain.output_tensor.dtype == kind
  scale, zero_point = plain.input_quantization  # [-1, 1] inputs: zero point mid-range.
  assert abs(zero_point - (128 + np.iinfo(kind).min)) <= 1
  assert abs(scale * 255.0 / 2.0 - 1.0) < 0.01
  assert plain.ends_in_softmax and plain.num_outputs == NUM_CLASSES
  add = plain.op_names.index("ADD")
  inner = plain.tensor_index(plain.graph.operators[add].outputs[0])
  logits_index = plain.tensor_index(plain.logits_tensor)
  images = pixels(16)
  probabilities, (logits, added) = interpret(path, images, [logits_index, inner])
  steps = {}
  for name, model in (("plain", plain), ("fake", fake)):
    out, inner_values = model.features(images, [model.output_tensor.index, inner])
    steps[name] = {
        "logits": _steps(model(images), logits, plain.tensor_info(logits_index).scale[0]),
        "probabilities": _steps(out, probabilities, plain.output_tensor.scale[0]),
        "inner": _steps(inner_values, added, plain.tensor_info(inner).scale[0])}
  for name, errors in steps.items():
    for what, (worst, mean) in errors.items():
      assert worst <= (8.0 if name == "plain" else 4.0) and mean <= 1.0, (
          name, what, worst, mean)
  mean_error = {name: sum(mean for _, mean in errors.values())
                for name, errors in steps.items()}
  assert mean_error["fake"] < mean_error["plain"], steps
  # With fake quantization the ADD output is off only where a requantization rounds
  # differently; one step of an input with a larger scale is a few output steps.
  assert steps["fake"]["inner"][1] <= 0.05, steps


# ----------------------------------------------------------------------------------
# Gradients


def _gradient_check(model, images, eps, count=6, seed=0):
  """Tape gradient of sum(w * logits) against central differences at random pixels.

  Only pixels where the function is linear over [x - eps, x + eps] along that pixel
  (second difference under 2 % of the first: no ReLU / clamp / max-pool kink inside)
  are compared, and at least `count` such pixels must be found.
  """
  rng = np.random.default_rng(seed)
  weights = tf.constant(rng.normal(size=(images.shape[0], model.num_outputs)), tf.float32)

  def loss(x):
    return float(tf.reduce_sum(weights * model(x)).numpy())

  x = tf.constant(images)
  with tf.GradientTape() as tape:
    tape.watch(x)
    value = tf.reduce_sum(weights * model(x))
  gradient = tape.gradient(value, x).numpy()
  assert np.abs(gradient).max() > 0
  # Pixels with a sizeable gradient, not within eps of 0 or 1 (where the input clip
  # makes the function flat on one side).
  candidates = np.flatnonzero(
      (np.abs(gradient) > 0.05 * np.abs(gradient).max()) &
      (np.abs(images - 0.5) < 0.5 - 1.5 * eps).reshape(gradient.shape))
  center, compared = loss(x), 0
  for position in rng.permutation(candidates)[:4 * count]:
    step = np.zeros(images.size, np.float32)
    step[position] = eps
    step = step.reshape(images.shape)
    plus, minus = loss(x + step), loss(x - step)
    if abs(plus - 2 * center + minus) > 0.02 * abs(plus - minus) / 2:
      continue  # A kink between x - eps and x + eps.
    estimate, exact = (plus - minus) / (2 * eps), gradient.flat[position]
    assert abs(estimate - exact) <= 0.03 * abs(exact) + 1e-3 * np.abs(gradient).max(), (
        position, estimate, exact)
    compared += 1
    if compared == count:
      return
  raise AssertionError(f"only {compared} of {4 * count} pixels away from kinks")


def test_gradient_matches_finite_differences_float(files):
  model = TFLiteRebuild(files["smooth"])
  _gradient_check(model, pixels(2, size=8, seed=3), eps=1e-2)


def test_gradient_matches_finite_differences_quantized(files):
  """Plain mode is piecewise smooth in the pixels; on the uint8 grid with a step of one
  level the input rounding is exact, so central differences match the tape."""
  model = TFLiteRebuild(files["uint8"])
  _gradient_check(model, pixels(2, seed=4), eps=1.0 / 255.0)


# ----------------------------------------------------------------------------------
# Dequantization


def test_dequantize_per_channel_by_hand():
  values = np.array([[1, 2], [3, -4]], np.int8)
  np.testing.assert_allclose(
      tflite_rebuild.dequantize(values, [0.5, 2.0], [1, 0], axis=1),
      [[0.0, 4.0], [1.0, -8.0]])
  np.testing.assert_allclose(
      tflite_rebuild.dequantize(values, [0.5, 2.0], [1, 0], axis=0),
      [[0.0, 0.5], [6.0, -8.0]])
  with pytest.raises(TFLiteRebuildError, match="3 per-channel scales"):
    tflite_rebuild.dequantize(values, [1.0, 2.0, 3.0], 0, axis=0)


def test_per_channel_weights_match_hand_computation(files):
  """Conv filter (axis 0), depthwise filter (axis 3) and int32 bias of the quantized
  model, from the interpreter's raw integers and parameters, element by element."""
  path = files["uint8"]
  model = TFLiteRebuild(path)
  interpreter = litert.Interpreter(
      model_path=path,
      experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  interpreter.allocate_tensors()
  details = interpreter.get_tensor_details()
  operators = model.graph.operators
  conv = operators[model.op_names.index("CONV_2D")]
  depthwise = operators[model.op_names.index("DEPTHWISE_CONV_2D")]
  checked = 0
  for index, axis in ((conv.inputs[1], 0), (depthwise.inputs[1], 3), (conv.inputs[2], 0)):
    raw = interpreter.get_tensor(index)
    params = details[index]["quantization_parameters"]
    scales, zero_points = params["scales"], params["zero_points"]
    assert params["quantized_dimension"] == axis and len(scales) == raw.shape[axis] > 1
    assert scales.max() > 2 * scales.min()  # Channels really differ.
    rebuilt = model.constant(index)
    for position in np.ndindex(*raw.shape):
      channel = position[axis]
      expected = (int(raw[position]) - int(zero_points[channel])) * float(scales[channel])
      assert rebuilt[position] == pytest.approx(expected, rel=1e-6, abs=1e-12)
      checked += 1
  assert checked > 200


# ----------------------------------------------------------------------------------
# Errors, tf.function, introspection


def test_unsupported_ops_name_op_and_file(tmp_path):
  layers = keras.layers
  inputs = keras.Input((8, 8, 3), batch_size=1)
  x = layers.Resizing(4, 4)(layers.Activation("tanh")(inputs))
  path = convert(keras.Model(inputs, layers.Conv2D(2, 3)(x)), tmp_path / "odd.tflite")
  with pytest.raises(ValueError) as error:
    TFLiteRebuild(path)
  assert isinstance(error.value, TFLiteRebuildError)
  message = str(error.value)
  assert "RESIZE_BILINEAR" in message and "TANH" in message and "odd.tflite" in message


def test_unsupported_fused_activation_names_op_and_file(files, tmp_path):
  path = str(tmp_path / "fused_tanh.tflite")
  with open(files["float32"], "rb") as src, open(path, "wb") as dst:
    dst.write(src.read())

  def fuse_tanh(model):
    model.subgraphs[0].operators[0].builtinOptions.fusedActivationFunction = (
        schema.ActivationFunctionType.TANH)

  edit_flatbuffer(path, fuse_tanh)
  with pytest.raises(TFLiteRebuildError,
                     match=r"operator 0 \(CONV_2D\) of .*fused_tanh\.tflite.*TANH"):
    TFLiteRebuild(path)


def test_dynamic_batch_inside_tf_function_and_tape(files):
  """The flatbuffer says batch 1; batches of 3 and 5 run in one tf.function."""
  path = files["uint8"]
  model = TFLiteRebuild(path)
  assert model.input_tensor.shape[0] == 1

  @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
  def logits_and_gradient(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      logits = model(x)
      loss = tf.reduce_sum(tf.nn.log_softmax(logits)[:, 0])
    return logits, tape.gradient(loss, x)

  images = pixels(8, seed=5)
  _, (expected,) = interpret(path, images, [model.tensor_index(model.logits_tensor)])
  tolerance = 4 * model.tensor_info(model.logits_tensor).scale[0]
  for start, stop in ((0, 3), (3, 8)):
    logits, gradient = logits_and_gradient(tf.constant(images[start:stop]))
    assert logits.shape == (stop - start, NUM_CLASSES)
    assert gradient.shape == (stop - start, SIZE, SIZE, 3)
    assert np.all(np.abs(gradient.numpy()).reshape(stop - start, -1).max(axis=1) > 0)
    np.testing.assert_allclose(logits.numpy(), expected[start:stop], atol=tolerance)


def test_features_by_name_or_index_and_errors(files):
  model = TFLiteRebuild(files["uint8"])
  images = pixels(2)
  name = model.tensor_names[model.graph.operators[1].outputs[0]]
  by_name = model.features(images, name)
  by_index, logits = model.features(images, [model.tensor_index(name), model.logits_tensor])
  np.testing.assert_array_equal(by_name.numpy(), by_index.numpy())
  assert by_name.shape[1:] == model.tensor_info(name).shape[1:]
  np.testing.assert_array_equal(logits.numpy(), model(images).numpy())
  pixels_in = model.features(images, model.input_tensor.index)
  scale, zero_point = model.input_quantization
  np.testing.assert_allclose(pixels_in.numpy() / scale + zero_point, np.round(images * 255),
                             atol=1e-3)
  with pytest.raises(TFLiteRebuildError, match="not computed"):
    model.features(images, model.graph.operators[1].inputs[1])
  with pytest.raises(TFLiteRebuildError, match="no_such_tensor"):
    model.features(images, "no_such_tensor")
  with pytest.raises(TFLiteRebuildError, match=r"expects images \[N, 12, 12, 3\]"):
    model(pixels(1, size=8))
  with pytest.raises(TFLiteRebuildError, match="float32"):
    model(tf.zeros([1, SIZE, SIZE, 3], tf.uint8))
  assert "uint8" in repr(model) and model.variables


def test_unreadable_file(tmp_path):
  path = tmp_path / "broken.tflite"
  path.write_bytes(b"not a flatbuffer")
  with pytest.raises(TFLiteRebuildError, match="broken.tflite"):
    TFLiteRebuild(path)


# ----------------------------------------------------------------------------------
# The real MobileNet-v2 on real ImageNet images (../shared)


@pytest.mark.shared  # About 3 s on 2 cores, so not marked slow.
def test_real_mobilenet_v2_top1_agreement(shared):
  """Float-mode rebuild vs the real interpreter (XNNPACK, as deployed) on 200 real val
  images: same uint8 pixels (central crop 0.875, bicubic antialiased resize), top-1 over
  the 1000 classes (background dropped) agrees on at least 97 %."""
  path = shared / MOBILENET_V2
  folder = shared / "datasets/imagenet_val_sample"
  if not path.is_file() or not folder.is_dir():
    pytest.skip(f"{path} or {folder} not found (set CDGAN_SHARED_DIR)")
  files = sorted(f for f in os.listdir(folder) if f.endswith(".JPEG"))[:200]
  images = tf.stack([tf.io.decode_jpeg(tf.io.read_file(str(folder / f)), channels=3)
                     for f in files])
  images = tf.image.central_crop(tf.image.convert_image_dtype(images, tf.float32), 0.875)
  images = tf.clip_by_value(tf.image.resize(images, (224, 224), method="bicubic",
                                            antialias=True), 0.0, 1.0)
  uint8 = tf.cast(tf.round(images * 255.0), tf.uint8).numpy()

  interpreter = litert.Interpreter(model_path=str(path), num_threads=2)
  interpreter.allocate_tensors()
  inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
  reference = []
  for image in uint8:
    interpreter.set_tensor(inp["index"], image[None])
    interpreter.invoke()
    reference.append(np.argmax(interpreter.get_tensor(out["index"])[0][1:]))

  model = TFLiteRebuild(path)
  assert (model.input_size, model.num_outputs, model.ends_in_softmax) == ((224, 224), 1001,
                                                                          True)
  rebuilt = np.concatenate([
      np.argmax(model(uint8[i:i + 50].astype(np.float32) / 255.0).numpy()[:, 1:], axis=1)
      for i in range(0, len(uint8), 50)])
  agreement = float(np.mean(rebuilt == np.array(reference)))
  assert agreement >= 0.97, agreement


def test_merged_clamps_equal_the_separate_ops_on_real_mobilenet(shared):
  """merge_clamps (the default; one Relu6 for RELU6 + uint8 clamp) computes what the
  separate ops compute, value and input gradient, on the real quantized MobileNet-v1."""
  path = shared / "models" / "tflite" / "mobilenet_v1_0.25_128_quant.tflite"
  merged, separate = TFLiteRebuild(path), TFLiteRebuild(path, merge_clamps=False)
  images = tf.random.stateless_uniform([2, 128, 128, 3], [3, 4])

  def value_and_gradient(model):
    with tf.GradientTape() as tape:
      tape.watch(images)
      logits = model(images)
      loss = tf.reduce_sum(tf.nn.log_softmax(logits)[:, 5])
    return logits.numpy(), tape.gradient(loss, images).numpy()

  (a, grad_a), (b, grad_b) = value_and_gradient(merged), value_and_gradient(separate)
  np.testing.assert_allclose(a, b, atol=2e-4)
  # Float32 rounding (the 6/hi factor in the weights) flips a few ReLU masks where an
  # activation sits within rounding of 0: the gradients agree to a cosine of 0.9999 and
  # in sign almost everywhere (an attack follows the sign).
  cosine = np.sum(grad_a * grad_b) / np.linalg.norm(grad_a) / np.linalg.norm(grad_b)
  assert cosine > 0.9999, cosine
  assert np.mean(np.sign(grad_a) == np.sign(grad_b)) > 0.995
  assert len(merged._saturated) > 10 and not separate._saturated  # pylint: disable=protected-access
