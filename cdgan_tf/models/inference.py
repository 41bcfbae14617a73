"""Inference copies of a trained generator: a lower compute dtype, static-size resizes.

A trained generator (the float32 Keras model of `generators`) is rebuilt layer by layer
(`keras.models.clone_model`) and given the same weights, for two purposes:

  compute_dtype    "bfloat16" or "float16": every layer up to and including the last
                   convolution runs under the Keras policy "mixed_<dtype>" (variables
                   stay float32 and are cast per call; the arithmetic is in the low
                   precision); the output head after it (tanh, the image-skip sum, the
                   [0, 1] mapping) stays float32, as in mixed-precision training.
                   Inputs and outputs stay float32 in [0, 1].
  matrix resizes   the image-skip `ResizeByFactor` layers (bicubic, antialiased: the
                   TF op ScaleAndTranslate, which neither XLA nor TFLite's builtin ops
                   provide) become `MatrixResizeByFactor`: the same linear map written
                   as two matrix products, for inputs whose height and width are known
                   when the function is traced (XLA, TFLite export).

`matrix_resize` is the project's one resize (`image_ops.resize`) in that form, for the
resizes around the generators.
"""

from __future__ import annotations

import functools
from typing import Tuple

import keras
import numpy as np
import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.common import checks
from cdgan_tf.common import errors
from cdgan_tf.models.layers import ResizeByFactor

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
_PACKAGE = "cdgan_tf"


@functools.lru_cache(maxsize=64)
def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """The [out_size, in_size] matrix of `image_ops.resize` along one axis (no clipping).

  The antialiased bicubic resize is separable and linear, so resizing [H, W] to [h, w]
  is R_h @ X @ R_w^T per channel. The rows are read off by resizing the identity: a
  [1, in_size, 1, in_size] "image" whose channel j is the unit vector e_j (the width
  axis of size 1 is left unchanged by the resize).
  """
  with tf.init_scope():  # Eager even when called while a function is being traced.
    eye = tf.reshape(tf.eye(in_size), [1, in_size, 1, in_size])
    rows = tf.image.resize(eye, (out_size, 1), method=image_ops.RESIZE_METHOD,
                           antialias=True)
    return np.asarray(tf.reshape(rows, [out_size, in_size]).numpy(), np.float32)


def _static_hw(images: tf.Tensor) -> Tuple[int, int]:
  height, width = images.shape[1], images.shape[2]
  if height is None or width is None:
    raise errors.UsageError(f"a matrix resize needs a known height and width, got shape "
                            f"{images.shape} (trace with a fixed input size)")
  return int(height), int(width)


def matrix_resize_unclipped(images: tf.Tensor, size) -> tf.Tensor:
  """Antialiased bicubic resize as matrix products, without clipping.

  Args:
    images: [N, H, W, C] of any float dtype, H and W known statically.
    size: Output side (int) or (height, width).

  Returns:
    [N, h, w, C] in the dtype of `images`, equal to `tf.image.resize(images, size,
    "bicubic", antialias=True)` up to float rounding (~1e-6 in float32).
  """
  out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
  height, width = _static_hw(images)
  channels = images.shape[3]
  rows = tf.constant(resize_matrix(height, out_h), dtype=images.dtype)
  cols = tf.constant(resize_matrix(width, out_w), dtype=images.dtype)
  # Height: [h, H] @ [N, H, W*C] (the matrix broadcast over the batch).
  x = tf.matmul(rows, tf.reshape(images, [-1, height, width * channels]))
  # Width: [w, W] @ [N*h, W, C].
  x = tf.matmul(cols, tf.reshape(x, [-1, width, channels]))
  return tf.reshape(x, [-1, out_h, out_w, channels])


def matrix_resize(images: tf.Tensor, size) -> tf.Tensor:
  """`image_ops.resize` (bicubic, antialiased, clipped to [0, 1]) as matrix products.

  Args:
    images: float32 [N, H, W, C] in [0, 1] with a static H and W.
    size: Output side (int) or (height, width).

  Returns:
    float32 [N, h, w, C] in [0, 1].
  """
  images = tf.cast(images, tf.float32)
  return tf.clip_by_value(matrix_resize_unclipped(images, size), 0.0, 1.0)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MatrixResizeByFactor(ResizeByFactor):
  """`ResizeByFactor` as matrix products (XLA- and TFLite-friendly).

  The same output, [N, round(H * factor), round(W * factor), C] clipped to [-1, 1],
  for inputs with a known height and width; inputs of unknown size fall back to
  `ResizeByFactor`'s ScaleAndTranslate.
  """

  def call(self, inputs):
    if inputs.shape[1] is None or inputs.shape[2] is None:
      return super().call(inputs)
    height, width = _static_hw(inputs)
    size = (int(round(height * self.factor)), int(round(width * self.factor)))
    return tf.clip_by_value(matrix_resize_unclipped(inputs, size), -1.0, 1.0)


def _last_conv_index(model: keras.Model) -> int:
  indices = [i for i, layer in enumerate(model.layers)
             if isinstance(layer, keras.layers.Conv2D)]
  if not indices:
    raise errors.UsageError(f"{model.name} has no Conv2D layer; not a CD-GAN generator")
  return indices[-1]


def _needs_copy(model: keras.Model, policy: str, matrix_resizes: bool) -> bool:
  last = _last_conv_index(model)
  if model.layers[last].dtype_policy.name != policy:
    return True
  return matrix_resizes and any(type(layer) is ResizeByFactor  # pylint: disable=unidiomatic-typecheck
                                for layer in model.layers)


def inference_copy(model: keras.Model, compute_dtype: str = "float32",
                   matrix_resizes: bool = False) -> keras.Model:
  """The generator rebuilt for inference, with the same weights.

  Args:
    model: A generator from `generators` (functional Keras model), float32 in [0, 1]
      -> float32 in [0, 1].
    compute_dtype: "float32", "bfloat16" or "float16": the arithmetic of the layers up
      to the last convolution (see the module docstring).
    matrix_resizes: Replace `ResizeByFactor` layers by `MatrixResizeByFactor`.

  Returns:
    `model` itself when it already is such a copy, else a new model with the same
    layer names and weights: float32 [N, H, W, 3] in [0, 1] -> float32 in [0, 1].

  Raises:
    ValueError: an unknown compute_dtype, or a model without convolutions.
  """
  checks.check_choice("compute_dtype", compute_dtype, COMPUTE_DTYPES)
  if compute_dtype == "float32" and not matrix_resizes:
    return model  # Nothing to change (any model, also one without convolutions).
  policy = "float32" if compute_dtype == "float32" else f"mixed_{compute_dtype}"
  if not _needs_copy(model, policy, matrix_resizes):
    return model
  last = _last_conv_index(model)
  position = {id(layer): i for i, layer in enumerate(model.layers)}

  def clone(layer):
    config = layer.get_config()
    if position[id(layer)] <= last:
      config["dtype"] = policy
    cls = type(layer)
    if matrix_resizes and cls is ResizeByFactor:
      cls = MatrixResizeByFactor
    return cls.from_config(config)

  copy = keras.models.clone_model(model, clone_function=clone)
  copy.set_weights(model.get_weights())
  return copy
