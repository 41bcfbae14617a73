"""Image operations shared by the pipeline, the defense, the baselines and evaluation.

All public functions take and return float32 NHWC (or HWC) RGB images in [0, 1].
The one resize used everywhere is bicubic with antialiasing (so downscaling by 4 does
not alias), clipped back into [0, 1] because bicubic overshoots.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import tensorflow as tf

Size = Union[int, Sequence[int]]
RESIZE_METHOD = "bicubic"


def _hw(size: Size):
  if isinstance(size, int):
    return (size, size)
  if isinstance(size, tf.Tensor):  # A [2] (height, width) tensor, e.g. tf.shape(x)[1:3].
    return size
  return tuple(size)


def resize(images: tf.Tensor, size: Size, method: str = RESIZE_METHOD) -> tf.Tensor:
  """Resizes images to `size` with antialiasing and clips to [0, 1].

  Args:
    images: float32 [N, H, W, C] or [H, W, C] in [0, 1].
    size: Output side (int) or (height, width).
    method: Any `tf.image.ResizeMethod` name; bicubic by default.

  Returns:
    float32 [N, h, w, C] or [h, w, C] in [0, 1].
  """
  images = tf.convert_to_tensor(images)
  resized = tf.image.resize(tf.cast(images, tf.float32), _hw(size), method=method,
                            antialias=True)
  return tf.clip_by_value(resized, 0.0, 1.0)


def to_generator_range(images: tf.Tensor) -> tf.Tensor:
  """Maps [0, 1] pixels to the generators' internal [-1, 1]."""
  return images * 2.0 - 1.0


def from_generator_range(images: tf.Tensor) -> tf.Tensor:
  """Maps the generators' [-1, 1] back to [0, 1] (clipped)."""
  return tf.clip_by_value((images + 1.0) * 0.5, 0.0, 1.0)


# The MSE of rounding to 8 bits, (1/255)^2 / 12: PSNR's ceiling, 10 log10(12 * 255^2)
# = 58.92 dB. Identical images (the attack mix's clean pairs) score it instead of +inf,
# which would make every mean over a batch infinite.
MSE_FLOOR = 1.0 / (12.0 * 255.0**2)
PSNR_CEILING_DB = 10.0 * math.log10(1.0 / MSE_FLOOR)


def psnr(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
  """Per-image PSNR in dB between two [N, H, W, C] batches in [0, 1]. Returns [N].

  The per-image MSE is floored at 8-bit rounding's (`MSE_FLOOR`), so the value is at
  most `PSNR_CEILING_DB` (58.92) and never +inf.
  """
  a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
  mse = tf.reduce_mean(tf.math.squared_difference(a, b), axis=[-3, -2, -1])
  return -10.0 * tf.math.log(tf.maximum(mse, MSE_FLOOR)) / math.log(10.0)


def ssim(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
  """Per-image SSIM between two [N, H, W, C] batches in [0, 1]. Returns [N].

  The Gaussian window shrinks for images smaller than the standard 11x11 window,
  so tiny test images still get a value.
  """
  a = tf.cast(a, tf.float32)
  b = tf.cast(b, tf.float32)
  side = min(a.shape[1] or 11, a.shape[2] or 11)
  filter_size = max(3, min(11, side))
  return tf.image.ssim(a, b, max_val=1.0, filter_size=filter_size)


def side_by_side(*batches: tf.Tensor, size: Size = None) -> tf.Tensor:
  """Concatenates batches horizontally after resizing each to a common size.

  Used for TensorBoard grids such as adversarial | generated | clean.

  Args:
    *batches: float32 [N, H_i, W_i, 3] in [0, 1].
    size: Common (height, width); defaults to the largest height and width.

  Returns:
    float32 [N, h, w * len(batches), 3] in [0, 1].
  """
  if size is None:
    size = (max(int(b.shape[1]) for b in batches), max(int(b.shape[2]) for b in batches))
  hw = _hw(size)
  panels = [tf.image.resize(tf.cast(b, tf.float32), hw, method="nearest")
            for b in batches]
  return tf.clip_by_value(tf.concat(panels, axis=2), 0.0, 1.0)


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
  """Decodes PNG/JPEG/GIF/BMP bytes into float32 [H, W, 3] in [0, 1].

  Grayscale becomes RGB; an alpha channel is dropped. JPEGs are decoded with the
  accurate integer DCT, which matches PIL (the default fast DCT differs from PIL by up
  to 20 levels), so folders read with PIL and records read with TF agree.
  """
  image = tf.cond(
      tf.io.is_jpeg(encoded),
      lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
      lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))
  image.set_shape([None, None, 3])
  return tf.image.convert_image_dtype(image, tf.float32)
