"""The one interface every purifier implements, and a purifier in front of a classifier.

A purifier maps images float32 [N, H, W, 3] in [0, 1] (any H, W) to purified images
float32 [N, H', W', 3] in [0, 1] (CD-GAN returns its working size; the baselines keep
the input size; a classifier adapter resizes either into its own input). Every purifier
(CD-GAN and its ablations, the baselines, an exported SavedModel) declares:

  name            the name the registry builds it from ("cdgan", "jpeg75", ...)
  differentiable  whether its TensorFlow gradient is useful to a white-box attacker;
                  a non-differentiable purifier (JPEG: no gradient; bit depth: zero
                  gradient almost everywhere) is attacked through BPDA instead
  stages(images)  the intermediate images worth showing (the sample grid): CD-GAN's
                  "after sub G" and "after super G"; one "purified" stage by default

Code that uses purifiers asks this interface; it never probes attributes.
"""

from __future__ import annotations

import abc
from typing import Callable, List, Tuple

import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.common import errors

Stage = Tuple[str, tf.Tensor]


def check_images(images, who: str) -> tf.Tensor:
  """float [N, H, W, C] -> float32 tensor; refuses other dtypes and ranks by name."""
  images = tf.convert_to_tensor(images)
  if not images.dtype.is_floating:
    raise errors.UsageError(f"{who}: images must be float32 in [0, 1], got dtype "
                            f"{images.dtype.name}")
  if images.shape.rank != 4:
    raise errors.UsageError(f"{who}: images must be [N, H, W, C], got shape {images.shape}")
  return tf.cast(images, tf.float32)


# Images per purifier call on CPU (benchmarks/purifier_inference.py --batch_sizes): the
# generators' activations of bigger batches outgrow the caches; one call on 40 64-px
# images took longer than 40 calls on one. Accelerators take whole batches.
CPU_BATCH_SIZE = 8


def in_batches(fn, images: tf.Tensor, batch_size: int) -> tf.Tensor:
  """fn over `images` in consecutive chunks of at most `batch_size`, concatenated.

  Works eagerly and inside tf.function (a dynamic N, including 0, with a static
  batch_size); fn must map [n, H, W, C] -> [n, ...] with the same per-image result at
  any n (the purifiers do).

  Args:
    fn: images [n, H, W, C] -> [n, ...].
    images: float32 [N, H, W, C].
    batch_size: >= 1.

  Returns:
    fn's output for all N images, in order.
  """
  if batch_size < 1:
    raise errors.UsageError(f"batch_size={batch_size} must be >= 1")
  count = images.shape[0]
  if count is not None and count <= batch_size:
    return fn(images)
  if count is not None:
    return tf.concat([fn(images[i:i + batch_size]) for i in range(0, count, batch_size)], 0)
  total = tf.shape(images)[0]

  def chunked():
    starts = tf.range(0, total, batch_size)
    first = fn(images[:batch_size])
    out = tf.TensorArray(first.dtype, size=tf.size(starts), infer_shape=False,
                         element_shape=tf.TensorShape([None]).concatenate(first.shape[1:]))
    out = out.write(0, first)
    for i in tf.range(1, tf.size(starts)):
      out = out.write(i, fn(images[starts[i]:starts[i] + batch_size]))
    return out.concat()

  return tf.cond(total <= batch_size, lambda: fn(images), chunked)


def cpu_batch_size(devices=None) -> int:
  """CPU_BATCH_SIZE when no GPU / TPU is visible, else 0 (no chunking)."""
  devices = tf.config.list_logical_devices() if devices is None else devices
  return 0 if any(d.device_type in ("GPU", "TPU") for d in devices) else CPU_BATCH_SIZE


class Purifier(abc.ABC):
  """An image -> image defense (see the module docstring).

  Attributes:
    name: The registry name of the purifier.
    differentiable: True when its gradient is meaningful for white-box attacks.
  """

  name: str = "purifier"
  differentiable: bool = False

  @abc.abstractmethod
  def __call__(self, images: tf.Tensor) -> tf.Tensor:
    """Purifies float32 [N, H, W, 3] in [0, 1] -> float32 [N, H', W', 3] in [0, 1]."""

  def stages(self, images: tf.Tensor) -> List[Stage]:
    """(title, images) of the stages to show; the last one is the purified output."""
    return [("purified", self(images))]

  def __repr__(self) -> str:
    return (f"{type(self).__name__}(name={self.name!r}, "
            f"differentiable={self.differentiable})")


class FunctionPurifier(Purifier):
  """A purifier made of a TensorFlow function (the baselines).

  Args:
    fn: float32 [N, H, W, C] in [0, 1] -> float32 [N, H, W, C] in [0, 1].
    name: Registry name.
    differentiable: Whether `fn`'s gradient is useful to an attacker.
  """

  def __init__(self, fn: Callable[[tf.Tensor], tf.Tensor], name: str,
               differentiable: bool):
    self._fn = fn
    self.name = name
    self.differentiable = bool(differentiable)

  def __call__(self, images) -> tf.Tensor:
    return self._fn(check_images(images, self.name))


def keep_input_size(purifier: Purifier) -> Purifier:
  """`purifier` followed by a resize back to each input's own size.

  CD-GAN returns its working size (256 at the paper's geometry); a user who purifies a
  224x224 or a 500x375 photo before some other model usually wants that photo's size
  back. The resize is the project's one resize (`image_ops.resize`: bicubic,
  antialiased, clipped to [0, 1]), so gradients still flow when the purifier's do.

  Args:
    purifier: Any `Purifier`.

  Returns:
    A purifier named like `purifier`: float32 [N, H, W, 3] in [0, 1] -> float32
    [N, H, W, 3] in [0, 1], for any H and W.
  """
  def purify(images: tf.Tensor) -> tf.Tensor:
    size = tf.shape(images)[1:3]
    purified = purifier(images)
    return image_ops.resize(purified, size)

  return FunctionPurifier(purify, purifier.name, purifier.differentiable)


IMAGES_SPEC = tf.TensorSpec([None, None, None, 3], tf.float32)


def batch_invariant(purifier: "Purifier",
                    batch_size: int = 0) -> Callable[[tf.Tensor], tf.Tensor]:
  """The purifier compiled once for every batch size: an image's result is its own.

  A `tf.function` traced per input shape (or generalised after a few shapes, as
  `reduce_retracing` does) runs a different graph for a batch of static size 40 than
  for the [None] batches after it, and grappler's rewrites give different float
  round-off: measured on the shipped ImageNet CD-GAN, up to 2.4e-7 per pixel between
  a batch of 6 and the same images one by one, 9 of 1.2 M uint8 values changed for a
  quantized classifier (eager execution: identical). One trace with a shape-generic
  signature runs the same graph for every batch: measured difference 0 (batches 1, 3,
  6; tests/defenses/test_base.py) on the machine of 2026-12-04. The kernels inside it
  may still block their work by the batch size: on an AMD EPYC with AVX2 and no AVX-512
  (2026-12-06, oneDNN on or off) a batch of 6 and the same images one by one differ by
  up to 1.8e-7 per pixel (about 5 % of the pixels by one or two float32 steps), whole
  batch or chunks of 2 or 4 alike. Only `batch_size=1` (every image run alone, inside
  the same trace) is exact on every CPU measured; it costs the batching speed-up
  (`cpu_batch_size()`). The exported SavedModels use the same signature
  (`serving.modules.IMAGES_SPEC`).

  Args:
    purifier: Any `Purifier`.
    batch_size: When > 0, the purifier runs on consecutive chunks of at most this many
      images inside the same trace (`in_batches`; `cpu_batch_size()` is the CPU's best;
      1 is bit-exact whatever the batch); 0 runs it on the whole batch.

  Returns:
    images float32 [N, H, W, 3] in [0, 1] -> the purifier's output, for any N.
  """
  if batch_size:
    return tf.function(lambda images: in_batches(purifier, images, batch_size),
                       input_signature=[IMAGES_SPEC])
  return tf.function(purifier.__call__, input_signature=[IMAGES_SPEC])


class DefendedClassifier:
  """A purifier in front of a classifier: images -> logits [N, num_classes].

  Differentiable end to end when both parts are (the white-box `pgd_defended` attack
  takes gradients through it).

  Args:
    purifier: A `Purifier`.
    classifier: A classifier adapter (`cdgan_tf.classifiers.Classifier`).
  """

  def __init__(self, purifier: Purifier, classifier):
    self.purifier = purifier
    self.classifier = classifier
    self.name = f"{purifier.name}+{classifier.name}"
    self.differentiable = bool(purifier.differentiable and classifier.differentiable)

  def __call__(self, images: tf.Tensor) -> tf.Tensor:
    return self.classifier(self.purifier(images))
