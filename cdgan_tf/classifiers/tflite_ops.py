"""TFLite builtin operators re-expressed with differentiable TensorFlow ops.

The op half of `tflite_rebuild` (which parses the flatbuffer and runs the graph). Each
builder in `BUILDERS` takes an `OpContext` -- the operator's options and the static
description (`TensorInfo`) of its input and output tensors -- and returns
`fn(inputs) -> tf.Tensor`, where `inputs[k]` is the runtime value of input k (float32)
or None for constant and absent optional inputs, which the builder captured itself.

Values are the *real* (dequantized) values of the quantized graph: every int8 / uint8
tensor q stands for (q - zero_point) * scale. Weights are dequantized once at build
time; `saturate` reproduces the range (and optionally the grid) of each quantized
activation. Nothing here imports from `cdgan_tf`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from .tflite_quant import dequantize, round_half_away, saturate, straight_through  # noqa: F401
from .tflite_quant import TensorInfo, TFLiteRebuildError

OpFn = Callable[[Sequence[Optional[tf.Tensor]]], tf.Tensor]


_ACTIVATIONS: Dict[int, Tuple[str, Callable[[tf.Tensor], tf.Tensor]]] = {
    0: ("NONE", lambda x: x),
    1: ("RELU", tf.nn.relu),
    2: ("RELU_N1_TO_1", lambda x: tf.clip_by_value(x, -1.0, 1.0)),
    3: ("RELU6", tf.nn.relu6),
}
_UNSUPPORTED_ACTIVATIONS = {4: "TANH", 5: "SIGN_BIT"}


@dataclasses.dataclass(eq=False)
class OpContext:
  """What a builder knows about one operator.

  Attributes:
    op_name: Builtin name ("CONV_2D", ...).
    options: The schema's *OptionsT object (None for ops without options).
    inputs: TensorInfo of each input; None for an absent optional input (index -1).
    outputs: TensorInfo of each output.
    make_weight: (TensorInfo, layout tag, array) -> tf.Variable holding a build-time
      constant; the same (tensor, tag) gives the same variable.
    where: "operator 12 (CONV_2D) of <file>", for error messages.
    fake_quant: Whether outputs will be rounded onto their grid (`saturate`).
    merge_clamps: Let `activation()` merge RELU / RELU6 with the output's clamp.
    saturated: Set by `activation()` when the activation it returns already clamps the
      output to its quantized range, so `saturate` need not clamp again.
  """
  op_name: str
  options: Any
  inputs: List[Optional[TensorInfo]]
  outputs: List[TensorInfo]
  make_weight: Callable[[TensorInfo, str, np.ndarray], tf.Variable]
  where: str
  fake_quant: bool = False
  merge_clamps: bool = True
  saturated: bool = False

  def error(self, message: str) -> TFLiteRebuildError:
    return TFLiteRebuildError(f"{self.where}: {message}")

  def option(self, name: str, default=None):
    return getattr(self.options, name, default) if self.options is not None else default

  def const(self, k: int, what: str) -> np.ndarray:
    """The build-time value of constant input k (see TensorInfo.value)."""
    info = self.inputs[k] if k < len(self.inputs) else None
    if info is None or not info.is_constant:
      raise self.error(f"its {what} (input {k}) must be a constant tensor")
    return info.value()

  def operand(self, k: int) -> Callable[[Sequence[Optional[tf.Tensor]]], tf.Tensor]:
    """Getter of input k at run time: the computed value, or the captured constant."""
    info = self.inputs[k]
    if info is not None and info.is_constant:
      weight = self.make_weight(info, "value", info.value())
      return lambda xs: weight
    return lambda xs: xs[k]

  def bias(self, k: int, scale: float = 1.0) -> Optional[tf.Variable]:
    """The optional bias at input k (int32 biases dequantized with their own scale),
    times `scale` (see `weight_scale`)."""
    if k >= len(self.inputs) or self.inputs[k] is None:
      return None
    return self.make_weight(self.inputs[k], _scaled_tag("bias", scale),
                            self.const(k, "bias") * np.float32(scale))

  def activation(self, linear: bool = False) -> Callable[[tf.Tensor], tf.Tensor]:
    """The fused activation, merged with the output's clamp where one op does both.

    A RELU / RELU6 into a quantized range [0, hi], hi < 6 (uint8 RELU6: [0, 5.99976]),
    is clip(x, 0, hi) = (hi / 6) * relu6(x * 6 / hi) up to float32 rounding (2e-7): one
    Relu6 / Relu6Grad kernel instead of the clamp's compare-and-select gradient (over
    half of a MobileNet attack step; benchmarks/pair_generation.py). Sets `saturated`
    when no further clamp is needed; never with `fake_quant`.

    Args:
      linear: The caller's pre-activation is linear in its weights and bias, which it
        multiplies by `weight_scale()` (the activation then skips the x * 6 / hi).
    """
    code = self.option("fusedActivationFunction", 0)
    if code not in _ACTIVATIONS:
      name = _UNSUPPORTED_ACTIVATIONS.get(code, str(code))
      raise self.error(f"fused activation {name} is not supported")
    act = _ACTIVATIONS[code][1]
    self._weight_scale = 1.0
    real_range = self.outputs[0].real_range() if self.outputs else None
    if (self.fake_quant or not self.merge_clamps or real_range is None
        or code not in (1, 3) or real_range[0] > 0):
      return act
    high = real_range[1]
    if code == 3 and high >= 6.0:
      self.saturated = True
      return act
    if not 0.0 < high < 6.0:
      return act  # A RELU with a range above 6: the clamp stays.
    self.saturated = True
    up, down = 6.0 / high, high / 6.0
    if linear:
      self._weight_scale = up
      return lambda x: tf.nn.relu6(x) * down
    return lambda x: tf.nn.relu6(x * up) * down

  def weight_scale(self) -> float:
    """The factor `activation(linear=True)` asked the weights and bias to carry."""
    return getattr(self, "_weight_scale", 1.0)

  def padding(self) -> str:
    return "SAME" if self.option("padding", 0) == 0 else "VALID"

  def strides(self) -> List[int]:
    return [1, self.option("strideH", 1), self.option("strideW", 1), 1]

  def dilations(self) -> List[int]:
    return [self.option("dilationHFactor", 1), self.option("dilationWFactor", 1)]


def _scaled_tag(tag: str, scale: float) -> str:
  return tag if scale == 1.0 else f"{tag}*{scale!r}"


def _add_bias(y: tf.Tensor, bias: Optional[tf.Tensor]) -> tf.Tensor:
  return y if bias is None else y + bias


def _conv_2d(ctx: OpContext) -> OpFn:
  filters = ctx.const(1, "filter")  # [out, h, w, in]
  in_channels = ctx.inputs[0].shape[-1]
  if filters.ndim != 4 or filters.shape[3] != in_channels:
    raise ctx.error(f"filter shape {list(filters.shape)} for {in_channels} input channels "
                    "(grouped convolution) is not supported")
  act = ctx.activation(linear=True)
  scale = ctx.weight_scale()
  kernel = ctx.make_weight(ctx.inputs[1], _scaled_tag("hwio", scale),
                           np.transpose(filters, (1, 2, 3, 0)) * np.float32(scale))
  bias = ctx.bias(2, scale)
  strides, padding, dilations = ctx.strides()[1:3], ctx.padding(), ctx.dilations()
  return lambda xs: act(_add_bias(tf.nn.convolution(
      xs[0], kernel, strides=strides, padding=padding, dilations=dilations), bias))


def _depthwise_conv_2d(ctx: OpContext) -> OpFn:
  filters = ctx.const(1, "filter")  # [1, h, w, in * multiplier]
  in_channels = ctx.inputs[0].shape[-1]
  if filters.ndim != 4 or filters.shape[0] != 1 or filters.shape[3] % in_channels:
    raise ctx.error(f"depthwise filter shape {list(filters.shape)} does not fit "
                    f"{in_channels} input channels")
  # Output channel c * multiplier + m of TFLite is filter [h, w, c, m] of TF.
  _, h, w, out_channels = filters.shape
  act = ctx.activation(linear=True)
  scale = ctx.weight_scale()
  kernel = ctx.make_weight(ctx.inputs[1], _scaled_tag("hwim", scale), filters.reshape(
      h, w, in_channels, out_channels // in_channels) * np.float32(scale))
  bias = ctx.bias(2, scale)
  strides, padding, dilations = ctx.strides(), ctx.padding(), ctx.dilations()
  return lambda xs: act(_add_bias(tf.nn.depthwise_conv2d(
      xs[0], kernel, strides=strides, padding=padding, dilations=dilations), bias))


def _fully_connected(ctx: OpContext) -> OpFn:
  weights = ctx.const(1, "weights")  # [out, in]
  if ctx.option("weightsFormat", 0) != 0 or weights.ndim != 2:
    raise ctx.error("only DEFAULT-format [out, in] weights are supported")
  out_features, in_features = weights.shape
  act = ctx.activation(linear=True)
  scale = ctx.weight_scale()
  kernel = ctx.make_weight(ctx.inputs[1], _scaled_tag("in_out", scale),
                           weights.T * np.float32(scale))
  bias = ctx.bias(2, scale)
  keep_dims = ctx.option("keepNumDims", False)

  def fn(xs):
    x = xs[0]
    y = act(_add_bias(tf.matmul(tf.reshape(x, [-1, in_features]), kernel), bias))
    if keep_dims:
      y = tf.reshape(y, tf.concat([tf.shape(x)[:-1], [out_features]], 0))
    return y

  return fn


def _pool(tf_pool) -> Callable[[OpContext], OpFn]:
  def build(ctx: OpContext) -> OpFn:
    size = [ctx.option("filterHeight"), ctx.option("filterWidth")]
    strides, padding, act = ctx.strides()[1:3], ctx.padding(), ctx.activation()
    return lambda xs: act(tf_pool(xs[0], size, strides, padding))
  return build


def _elementwise(tf_fn) -> Callable[[OpContext], OpFn]:
  def build(ctx: OpContext) -> OpFn:
    a, b, act = ctx.operand(0), ctx.operand(1), ctx.activation()
    return lambda xs: act(tf_fn(a(xs), b(xs)))
  return build


def _unary(tf_fn) -> Callable[[OpContext], OpFn]:
  def build(ctx: OpContext) -> OpFn:
    x = ctx.operand(0)
    return lambda xs: tf_fn(x(xs))
  return build


def _concatenation(ctx: OpContext) -> OpFn:
  parts = [ctx.operand(k) for k in range(len(ctx.inputs))]
  axis, act = ctx.option("axis", 0), ctx.activation()
  return lambda xs: act(tf.concat([part(xs) for part in parts], axis))


def _mean(ctx: OpContext) -> OpFn:
  axes = [int(a) for a in np.reshape(ctx.const(1, "axes"), -1)]
  keep_dims = bool(ctx.option("keepDims", False))
  return lambda xs: tf.reduce_mean(xs[0], axis=axes, keepdims=keep_dims)


def _pad(ctx: OpContext) -> OpFn:
  # A quantized PAD fills with the zero point, i.e. real 0.
  paddings = np.asarray(ctx.const(1, "paddings"), np.int64).reshape(-1, 2)
  return lambda xs: tf.pad(xs[0], paddings)


def _reshape(ctx: OpContext) -> OpFn:
  """Target = the output's flatbuffer shape, with a preserved batch dimension dynamic."""
  in_shape, target = ctx.inputs[0].shape, list(ctx.outputs[0].shape)
  if not target or min(target) < 0:
    raise ctx.error(f"output shape {target} is not static")
  if in_shape and in_shape[0] == target[0]:
    target[0] = -1
  x = ctx.operand(0)
  return lambda xs: tf.reshape(x(xs), target)


def _squeeze(ctx: OpContext) -> OpFn:
  in_shape = ctx.inputs[0].shape
  dims = ctx.option("squeezeDims")  # A numpy array, a list or None.
  axes = [int(a) % len(in_shape) for a in (dims if dims is not None else [])]
  # Without explicit axes, squeeze the size-1 dimensions except the (dynamic) batch.
  axes = axes or [i for i, size in enumerate(in_shape) if size == 1 and i > 0]
  return lambda xs: tf.squeeze(xs[0], axis=axes)


def _softmax(ctx: OpContext) -> OpFn:
  beta = float(ctx.option("beta", 1.0))
  return lambda xs: tf.nn.softmax(beta * xs[0], axis=-1)


BUILDERS: Dict[str, Callable[[OpContext], OpFn]] = {
    "CONV_2D": _conv_2d,
    "DEPTHWISE_CONV_2D": _depthwise_conv_2d,
    "FULLY_CONNECTED": _fully_connected,
    "ADD": _elementwise(tf.add),
    "MUL": _elementwise(tf.multiply),
    "AVERAGE_POOL_2D": _pool(tf.nn.avg_pool2d),
    "MAX_POOL_2D": _pool(tf.nn.max_pool2d),
    "MEAN": _mean,
    "PAD": _pad,
    "RESHAPE": _reshape,
    "SQUEEZE": _squeeze,
    "CONCATENATION": _concatenation,
    "SOFTMAX": _softmax,
    "LOGISTIC": _unary(tf.sigmoid),
    # Re/de-quantization changes the representation, not the real value; the clamp
    # (and fake quantization) to the output's type is applied to every op's output.
    "QUANTIZE": _unary(tf.identity),
    "DEQUANTIZE": _unary(tf.identity),
}
SUPPORTED_OPS = tuple(sorted(BUILDERS))
