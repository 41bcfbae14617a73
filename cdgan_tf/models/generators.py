"""The two CD-GAN generators: sub-resolution (large -> small) and super-resolution.

Both follow SRGAN (Ledig et al., 2017, "Photo-Realistic Single Image Super-Resolution
Using a Generative Adversarial Network"): a 9x9 head conv + PReLU, a trunk of residual
blocks conv3x3-BN-PReLU-conv3x3-BN with identity skips, a conv3x3-BN after the trunk with
a long skip from the head, and a 9x9 tail conv to RGB with tanh.

- Super generator: x2 pixel-shuffle upsampling blocks (conv3x3 to 4*filters,
  depth_to_space, PReLU) between the long skip and the tail, log2(scale) of them.
- Sub generator: the mirror image, log2(scale) stride-2 conv3x3 + PReLU downsampling
  steps right after the head, so the trunk runs at the small resolution.

The models are fully convolutional (input [None, None, 3]; PReLU shares its slopes over
the spatial axes). Their inputs and outputs are float32 in [0, 1]; the conversion to the
generators' internal [-1, 1] happens once, in the first layer, and back once, in the last
layer, which stays float32 under a mixed-precision policy.
"""

from __future__ import annotations

import operator

import keras
import tensorflow as tf

from cdgan_tf import image_ops

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
      raise ValueError(f"PixelShuffle block_size={block_size} must be >= 2")
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
      raise ValueError(f"ResizeByFactor factor={factor} must be positive")
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


def _num_steps(scale: int) -> int:
  """log2(scale) for a power of two >= 1, else ValueError."""
  try:
    value = operator.index(scale)  # ints and numpy ints; not floats or bools
  except TypeError:
    value = None
  if value is None or isinstance(scale, bool) or value < 1 or value & (value - 1):
    raise ValueError(f"scale={scale!r} must be a power of 2 (1, 2, 4, 8, ...)")
  return value.bit_length() - 1


def _check_sizes(num_res_blocks: int, filters: int) -> None:
  if num_res_blocks < 0:
    raise ValueError(f"num_res_blocks={num_res_blocks} must not be negative")
  if filters < 1:
    raise ValueError(f"filters={filters} must be positive")


def _prelu(x, name):
  return keras.layers.PReLU(shared_axes=[1, 2], name=name)(x)


def _conv(x, filters, kernel_size, name, strides=1):
  return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                             name=name)(x)


def _head(x, filters, p):
  x = _conv(x, filters, 9, f"{p}head_conv")
  return _prelu(x, f"{p}head_prelu")


def _trunk(x, num_res_blocks, filters, p):
  """Residual blocks, then conv3x3-BN and the long skip from the trunk's input."""
  skip = x
  for i in range(num_res_blocks):
    prefix = f"{p}res{i}"
    y = _conv(x, filters, 3, f"{prefix}_conv1")
    y = keras.layers.BatchNormalization(name=f"{prefix}_bn1")(y)
    y = _prelu(y, f"{prefix}_prelu")
    y = _conv(y, filters, 3, f"{prefix}_conv2")
    y = keras.layers.BatchNormalization(name=f"{prefix}_bn2")(y)
    x = keras.layers.Add(name=f"{prefix}_add")([x, y])
  x = _conv(x, filters, 3, f"{p}trunk_conv")
  x = keras.layers.BatchNormalization(name=f"{p}trunk_bn")(x)
  return keras.layers.Add(name=f"{p}long_skip")([skip, x])


def _tail(x, p, skip_image=None):
  """9x9 conv to RGB, tanh, back to [0, 1]; the last layers are float32.

  With `skip_image` (the input resized to the output size, in [-1, 1]) the tanh output
  is a residual added to it and the sum is clipped to [-1, 1]; the tail conv starts at
  zero, so an untrained generator outputs exactly the resized input.
  """
  if skip_image is None:
    x = _conv(x, 3, 9, f"{p}tail_conv")
    x = keras.layers.Activation("tanh", dtype="float32", name=f"{p}tanh")(x)
  else:
    x = keras.layers.Conv2D(3, 9, padding="same", kernel_initializer="zeros",
                            name=f"{p}tail_conv")(x)
    x = keras.layers.Activation("tanh", dtype="float32", name=f"{p}tanh")(x)
    x = keras.layers.Add(dtype="float32", name=f"{p}image_skip")([skip_image, x])
  # FromGeneratorRange clips, so the skip + residual sum ends in [0, 1] too.
  return FromGeneratorRange(dtype="float32", name=f"{p}to_unit_range")(x)


def _input(p):
  images = keras.Input(shape=(None, None, 3), dtype="float32", name="images")
  return images, ToGeneratorRange(name=f"{p}to_generator_range")(images)


def layer_prefix(model_name: str) -> str:
  """Prefix of every layer name of a generator called `model_name`.

  Layer (and so variable) names differ between the two generators, which a SavedModel
  holding both needs: TF1-style loaders such as `saved_model_cli run` key variables
  by name.
  """
  return f"{model_name}_"


def build_sub_generator(scale: int = 4, num_res_blocks: int = 16, filters: int = 64,
                        name: str = "sub_generator", image_skip: bool = False) -> keras.Model:
  """Builds the sub-resolution generator (large adversarial -> small clean image).

  Args:
    scale: Downscaling factor, a power of 2 (1 = same size).
    num_res_blocks: Residual blocks in the trunk (SRGAN: 16).
    filters: Feature maps of the head and trunk (SRGAN: 64).
    name: Model name.
    image_skip: Add the generator's output, as a residual, to the bicubic-downscaled
      input (see `_tail`); the generator then starts as plain resizing.

  Returns:
    A Keras model [N, H, W, 3] float32 in [0, 1] -> [N, H/scale, W/scale, 3] float32 in
    [0, 1]. H and W should be multiples of `scale` (otherwise the strided convs round
    up: ceil(H/scale)).

  Raises:
    ValueError: scale is not a power of 2, or the sizes are invalid.
  """
  steps = _num_steps(scale)
  _check_sizes(num_res_blocks, filters)
  p = layer_prefix(name)
  images, x = _input(p)
  skip = (ResizeByFactor(1.0 / scale, name=f"{p}image_skip_resize")(x) if image_skip
          else None)
  x = _head(x, filters, p)
  for i in range(steps):
    x = _conv(x, filters, 3, f"{p}down{i}_conv", strides=2)
    x = _prelu(x, f"{p}down{i}_prelu")
  x = _trunk(x, num_res_blocks, filters, p)
  return keras.Model(images, _tail(x, p, skip), name=name)


def build_super_generator(scale: int = 4, num_res_blocks: int = 16, filters: int = 64,
                          name: str = "super_generator",
                          image_skip: bool = False) -> keras.Model:
  """Builds the super-resolution generator (small adversarial -> large clean image).

  Args:
    scale: Upscaling factor, a power of 2 (1 = same size).
    num_res_blocks: Residual blocks in the trunk (SRGAN: 16).
    filters: Feature maps of the head and trunk (SRGAN: 64).
    name: Model name.
    image_skip: Add the generator's output, as a residual, to the bicubic-upscaled
      input (see `_tail`); the generator then starts as plain resizing.

  Returns:
    A Keras model [N, h, w, 3] float32 in [0, 1] -> [N, h*scale, w*scale, 3] float32
    in [0, 1].

  Raises:
    ValueError: scale is not a power of 2, or the sizes are invalid.
  """
  steps = _num_steps(scale)
  _check_sizes(num_res_blocks, filters)
  p = layer_prefix(name)
  images, x = _input(p)
  skip = (ResizeByFactor(float(scale), name=f"{p}image_skip_resize")(x) if image_skip
          else None)
  x = _head(x, filters, p)
  x = _trunk(x, num_res_blocks, filters, p)
  for i in range(steps):
    x = _conv(x, 4 * filters, 3, f"{p}up{i}_conv")
    x = PixelShuffle(2, name=f"{p}up{i}_shuffle")(x)
    x = _prelu(x, f"{p}up{i}_prelu")
  return keras.Model(images, _tail(x, p, skip), name=name)
