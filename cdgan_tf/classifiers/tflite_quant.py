"""Quantized tensors of a TFLite model, as the float rebuild sees them.

The value half of `tflite_ops`: the static description of a tensor (`TensorInfo`: its
type, shape, quantization and constant data), dequantization of constants, and
`saturate`, which reproduces the range (and optionally the grid) of a quantized
activation. Every int8 / uint8 tensor q stands for the real value
(q - zero_point) * scale. Nothing here imports from `cdgan_tf`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf

from cdgan_tf.common import errors

# Integer storage types whose tensors are clamped to their representable real range.
_SATURATING_TYPES = (np.int8, np.uint8, np.int16, np.uint16)


class TFLiteRebuildError(errors.UsageError):
  """A TFLite model (or a request on it) the float rebuild cannot handle.

  The message names the model file and, for graph problems, the operator.
  """


def dequantize(values: np.ndarray, scale, zero_point, axis: int = 0) -> np.ndarray:
  """Real values of quantized integers: (q - zero_point) * scale.

  Args:
    values: Integer array of any shape.
    scale: One scale (per-tensor) or one per slice along `axis` (per-channel).
    zero_point: Matching zero point(s); one value is broadcast.
    axis: The quantized dimension for per-channel scales (TFLite conv filters
      [out, h, w, in] use 0, depthwise filters [1, h, w, out] use 3).

  Returns:
    float32 array, same shape as `values`.

  Raises:
    TFLiteRebuildError: the number of scales does not match values.shape[axis].
  """
  values = np.asarray(values)
  scale = np.asarray(scale, np.float64).reshape(-1)
  zero_point = np.asarray(zero_point, np.int64).reshape(-1)
  if zero_point.size == 1:
    zero_point = np.broadcast_to(zero_point, scale.shape)
  if scale.size > 1:
    if values.ndim == 0 or values.shape[axis] != scale.size:
      raise TFLiteRebuildError(f"{scale.size} per-channel scales do not match axis {axis} "
                               f"of a tensor of shape {list(values.shape)}")
    shape = [1] * values.ndim
    shape[axis] = scale.size
    scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
  return ((values.astype(np.float64) - zero_point) * scale).astype(np.float32)


@dataclasses.dataclass(eq=False)
class TensorInfo:
  """Static description of one tensor of the flatbuffer's main subgraph.

  Attributes:
    index: Tensor index (the interpreter's tensor index too).
    name: Tensor name from the flatbuffer.
    shape: Shape in the flatbuffer (batch usually 1; the rebuild keeps batch dynamic).
    dtype: Storage type (np.uint8 for a uint8-quantized tensor, np.float32, ...).
    scale: float32 [1] (per-tensor) or [C] (per-channel) scales, None if not quantized.
    zero_point: int64 zero points matching `scale`, None if not quantized.
    quantized_dimension: Axis of per-channel scales.
    raw: The stored values of a constant tensor (dtype, shape as above); None for
      activations.
  """
  index: int
  name: str
  shape: Tuple[int, ...]
  dtype: np.dtype
  scale: Optional[np.ndarray] = None
  zero_point: Optional[np.ndarray] = None
  quantized_dimension: int = 0
  raw: Optional[np.ndarray] = None

  @property
  def is_constant(self) -> bool:
    return self.raw is not None

  @property
  def quantized(self) -> bool:
    return self.scale is not None and np.issubdtype(self.dtype, np.integer)

  def value(self) -> Optional[np.ndarray]:
    """A constant's value: float32 real values for float and quantized tensors, the
    raw integers (shapes, axes, paddings) otherwise; None for activations."""
    if self.raw is None:
      return None
    if np.issubdtype(self.raw.dtype, np.floating):
      return self.raw.astype(np.float32)
    if self.quantized:
      return dequantize(self.raw, self.scale, self.zero_point, self.quantized_dimension)
    return self.raw

  def real_range(self) -> Optional[Tuple[float, float]]:
    """(lowest, highest) real value the quantized type can hold, for per-tensor
    8/16-bit quantized tensors: ((qmin - zp) * scale, (qmax - zp) * scale); else None."""
    if (not self.quantized or self.scale.size != 1 or self.scale[0] <= 0 or
        self.dtype.type not in _SATURATING_TYPES):
      return None
    info = np.iinfo(self.dtype)
    scale, zero_point = float(self.scale[0]), int(self.zero_point[0])
    return (info.min - zero_point) * scale, (info.max - zero_point) * scale


def straight_through(x: tf.Tensor, fn: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
  """fn(x) in the forward pass, the identity's gradient in the backward pass."""
  return x + tf.stop_gradient(fn(x) - x)


def round_half_away(x: tf.Tensor) -> tf.Tensor:
  """Rounds halves away from zero, as TFLite's quantized kernels do (tf.round: to even)."""
  return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


def saturate(x: tf.Tensor, info: TensorInfo, fake_quant: bool = False) -> tf.Tensor:
  """Clamps an op's float output to the real range of its quantized tensor.

  Args:
    x: float32 values of tensor `info`, any shape.
    info: The tensor; non-quantized (float) tensors pass unchanged.
    fake_quant: Also round onto the quantization grid (multiples of the scale from the
      zero point), with a straight-through gradient.

  Returns:
    float32, same shape, in info.real_range(). The clamp's gradient is 0 outside the
    range, as the function's own derivative.
  """
  real_range = info.real_range()
  if real_range is None:
    return x
  x = tf.clip_by_value(x, *real_range)
  if fake_quant:
    scale = float(info.scale[0])
    x = straight_through(x, lambda v: round_half_away(v / scale) * scale)
  return x
