"""Cheap input-transformation defenses to compare CD-GAN against.

Each is a `defenses.base.FunctionPurifier`: images float32 [N, H, W, C] in [0, 1] (any
H, W) -> the same shape, float32 in [0, 1], with the `name` that `make_baseline` parses
("resize", "jpeg75", "bits4", "median3", ...) and `differentiable` (JPEG and bit depth are
not: attack them through BPDA).

Baselines:
  identity   no defense.
  resize     CD-GAN's geometry without learning: resize to image_size, down to
             image_size / scale, back up to image_size, back to the input size, each
             with `image_ops.resize` (bicubic, antialiased, clipped). Differentiable.
  jpeg<q>    JPEG re-encoding at quality q in 0..100 (Dziugaite et al. 2016; Guo et al.
             2018), per image via tf.map_fn, works inside tf.function.
  bits<k>    bit-depth reduction to k in 1..8 bits, round(x * (2^k - 1)) / (2^k - 1)
             (feature squeezing, Xu et al. 2018).
  median<k>  k x k median filter (odd k), reflect padding, per channel (Xu et al. 2018).
             Differentiable almost everywhere: the gradient flows to the median pixel.
"""

from __future__ import annotations

import re
import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.common import checks
from cdgan_tf.common import errors
from cdgan_tf.defenses.base import FunctionPurifier

VALID_FORMS = ("identity", "resize", "jpeg<q> (q in 0..100, e.g. jpeg75)",
               "bits<k> (k in 1..8, e.g. bits4)", "median<k> (odd k >= 1, e.g. median3)")


def _size(images):
  """(height, width) of a batch: static ints when known, else scalar tensors."""
  static = images.shape[1:3]
  dynamic = tf.shape(images)
  return (static[0] if static[0] is not None else dynamic[1],
          static[1] if static[1] is not None else dynamic[2])


def identity() -> FunctionPurifier:
  """No defense: returns its input."""
  return FunctionPurifier(tf.identity, "identity", differentiable=True)


def resize(image_size: int, scale: int) -> FunctionPurifier:
  """Down/up resizing with CD-GAN's geometry and no learning.

  input (H, W) -> image_size -> image_size / scale -> image_size -> (H, W), each step
  bicubic with antialiasing and clipped to [0, 1]; steps that would not change the
  size are skipped.

  Args:
    image_size: Side CD-GAN resizes every input to (paper: 256).
    scale: Down-scaling factor (paper: 4); image_size must be divisible by it.
      Both come from the CD-GAN being compared (or the command line), never a default.
  """
  image_size, scale = checks.check_geometry(int(image_size), int(scale))
  small = image_size // scale

  def fn(images):
    height, width = _size(images)
    same_input = isinstance(height, int) and (height, width) == (image_size, image_size)
    x = images if same_input else image_ops.resize(images, image_size)
    if scale > 1:
      x = image_ops.resize(image_ops.resize(x, small), image_size)
    if not same_input:
      x = image_ops.resize(x, (height, width))
    return x

  return FunctionPurifier(fn, "resize", differentiable=True)


def jpeg(quality: int = 75) -> FunctionPurifier:
  """JPEG compression at `quality` (0..100), image by image."""
  quality = int(quality)
  if not 0 <= quality <= 100:
    raise errors.UsageError(f"jpeg baseline: quality={quality} must be in 0..100")

  def fn(images):
    def one(image):
      return tf.image.adjust_jpeg_quality(image, quality)

    out = tf.map_fn(one, images, fn_output_signature=tf.TensorSpec(
        images.shape[1:], tf.float32))
    return tf.clip_by_value(out, 0.0, 1.0)

  return FunctionPurifier(fn, f"jpeg{quality}", differentiable=False)


def bits(depth: int = 4) -> FunctionPurifier:
  """Bit-depth reduction to `depth` bits per channel (2^depth levels)."""
  depth = int(depth)
  if not 1 <= depth <= 8:
    raise errors.UsageError(f"bits baseline: depth={depth} must be in 1..8")
  levels = float(2 ** depth - 1)

  def fn(images):
    return tf.round(tf.clip_by_value(images, 0.0, 1.0) * levels) / levels

  return FunctionPurifier(fn, f"bits{depth}", differentiable=False)


def median(kernel: int = 3) -> FunctionPurifier:
  """k x k median filter per channel with reflect padding (odd k; k=1 is identity)."""
  kernel = int(kernel)
  if kernel < 1 or kernel % 2 == 0:
    raise errors.UsageError(f"median baseline: kernel={kernel} must be odd and >= 1")
  pad = kernel // 2
  area = kernel * kernel

  def fn(images):
    if kernel == 1:
      return tf.identity(images)
    height, width = _size(images)
    if isinstance(height, int) and min(height, width) <= pad:
      raise errors.UsageError(f"median{kernel}: images of {height}x{width} are too small for "
                              f"reflect padding by {pad}")
    channels = images.shape[3] if images.shape[3] is not None else tf.shape(images)[3]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    patches = tf.image.extract_patches(padded, sizes=[1, kernel, kernel, 1],
                                       strides=[1, 1, 1, 1], rates=[1, 1, 1, 1],
                                       padding="VALID")  # [N, H, W, k*k*C], (ky, kx, c)
    shape = tf.shape(patches)
    patches = tf.reshape(patches, tf.stack([shape[0], shape[1], shape[2], area,
                                            channels]))
    patches = tf.transpose(patches, [0, 1, 2, 4, 3])  # [N, H, W, C, k*k]
    top = tf.math.top_k(patches, k=area // 2 + 1, sorted=True).values
    out = top[..., -1]
    out.set_shape(images.shape)
    return out

  return FunctionPurifier(fn, f"median{kernel}", differentiable=True)


_PATTERN = re.compile(r"^(jpeg|bits|median)(\d+)$")


def is_baseline_name(name: str) -> bool:
  """Whether `name` has a baseline's form ("resize", "jpeg75", ...; its parameter's range
  is checked by `make_baseline`)."""
  text = str(name).strip().lower()
  return text in ("identity", "resize") or _PATTERN.match(text) is not None


def make_baseline(name: str, image_size: int, scale: int) -> FunctionPurifier:
  """Builds a baseline purifier from its name.

  Args:
    name: "identity", "resize", "jpeg<q>", "bits<k>" or "median<k>" (e.g. "jpeg75",
      "bits4", "median3").
    image_size: CD-GAN's working side, used by "resize".
    scale: CD-GAN's scale factor, used by "resize".

  Returns:
    A `Purifier` with `.name` and `.differentiable`.

  Raises:
    ValueError: for an unknown name (the message lists the valid forms) or an
      out-of-range parameter.
  """
  text = str(name).strip().lower()
  if text == "identity":
    return identity()
  if text == "resize":
    return resize(image_size, scale)
  match = _PATTERN.match(text)
  if match is None:
    raise errors.UsageError(f"unknown baseline {name!r}; valid forms: {', '.join(VALID_FORMS)}")
  kind, value = match.group(1), int(match.group(2))
  return {"jpeg": jpeg, "bits": bits, "median": median}[kind](value)
