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

import keras

from cdgan_tf import config as config_lib
from cdgan_tf.common import checks
from cdgan_tf.common import errors
from cdgan_tf.models.layers import FromGeneratorRange
from cdgan_tf.models.layers import PixelShuffle
from cdgan_tf.models.layers import ResizeByFactor
from cdgan_tf.models.layers import ToGeneratorRange


def _num_steps(scale: int) -> int:
  """log2(scale) for a power of two >= 1, else ValueError."""
  return checks.check_power_of_two("scale", scale).bit_length() - 1


def _check_sizes(num_res_blocks: int, filters: int) -> None:
  if num_res_blocks < 0:
    raise errors.UsageError(f"num_res_blocks={num_res_blocks} must not be negative")
  if filters < 1:
    raise errors.UsageError(f"filters={filters} must be positive")


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


def build_generator(role: config_lib.Role, scale: int,
                    model_config: config_lib.ModelConfig) -> keras.Model:
  """The generator of a role, named "<role>_generator" (sizes from `model_config`).

  Args:
    role: Role.SUB (large -> small) or Role.SUPER (small -> large).
    scale: The resolution ratio (a power of 2).
    model_config: Blocks, filters and the image skip.

  Returns:
    The Keras model; see `build_sub_generator` / `build_super_generator`.
  """
  role = config_lib.Role(role)
  build = build_sub_generator if role is config_lib.Role.SUB else build_super_generator
  return build(scale=scale, num_res_blocks=model_config.num_res_blocks,
               filters=model_config.filters, name=f"{role.value}_generator",
               image_skip=model_config.image_skip)
