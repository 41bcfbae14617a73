"""Custom Keras layers of the generators and the discriminator.

All are registered (package "cdgan_tf"), so `.keras` files holding them load with
`keras.models.load_model` once this module is imported (`cdgan_tf.models` imports it).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.common import errors

_PACKAGE = "cdgan_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ToGeneratorRange(keras.layers.Layer):
  """Maps [0, 1] pixels to [-1, 1] (`image_ops.to_generator_range`). Shape unchanged."""

  def call(self, inputs):
    return image_ops.to_generator_range(inputs)

  def compute_output_shape(self, input_shape):
    return input_shape


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FromGeneratorRange(keras.layers.Layer):
  """Maps [-1, 1] to [0, 1] pixels (`image_ops.from_generator_range`). Shape unchanged."""

  def call(self, inputs):
    return image_ops.from_generator_range(inputs)

  def compute_output_shape(self, input_shape):
    return input_shape


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PixelShuffle(keras.layers.Layer):
  """Sub-pixel upsampling (Shi et al., 2016): `tf.nn.depth_to_space`.

  [N, H, W, C * r^2] -> [N, H * r, W * r, C].

  Args:
    block_size: The upsampling factor r.
  """

  def __init__(self, block_size: int = 2, **kwargs):
    super().__init__(**kwargs)
    if block_size < 2:
      raise errors.UsageError(f"PixelShuffle block_size={block_size} must be >= 2")
    self.block_size = int(block_size)

  def call(self, inputs):
    return tf.nn.depth_to_space(inputs, self.block_size)

  def compute_output_shape(self, input_shape):
    n, h, w, c = input_shape
    r = self.block_size
    return (n, None if h is None else h * r, None if w is None else w * r,
            None if c is None else c // (r * r))

  def get_config(self):
    config = super().get_config()
    config["block_size"] = self.block_size
    return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ResizeByFactor(keras.layers.Layer):
  """Bicubic, antialiased resize by a fixed factor, clipped to [-1, 1].

  [N, H, W, C] -> [N, round(H * factor), round(W * factor), C]. The image-level skip of
  the generators: the generator's residual is added to the plainly resized input.

  Args:
    factor: Output size / input size (e.g. 0.25 for the sub generator at scale 4).
  """

  def __init__(self, factor: float = 1.0, **kwargs):
    super().__init__(**kwargs)
    if factor <= 0:
      raise errors.UsageError(f"ResizeByFactor factor={factor} must be positive")
    self.factor = float(factor)

  def call(self, inputs):
    shape = tf.shape(inputs)
    size = tf.cast(tf.round(tf.cast(shape[1:3], tf.float32) * self.factor), tf.int32)
    resized = tf.image.resize(inputs, size, method="bicubic", antialias=True)
    return tf.clip_by_value(tf.cast(resized, inputs.dtype), -1.0, 1.0)

  def compute_output_shape(self, input_shape):
    n, h, w, c = input_shape
    scaled = lambda v: None if v is None else int(round(v * self.factor))  # noqa: E731
    return (n, scaled(h), scaled(w), c)

  def get_config(self):
    config = super().get_config()
    config["factor"] = self.factor
    return config
