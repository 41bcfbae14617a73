"""Label-free feature-distortion attack: push a feature network's embedding away.

NRP (Naseer et al., "A self-supervised approach for adversarial robustness", CVPR 2020)
trains its purifier on perturbations that maximise the distance between the features
of the perturbed and of the clean image. No label enters, so any natural photo can be
attacked, and the perturbations are not tied to one classifier's decision boundary.

Objective (ascended): sum over the batch of mean((f(x_adv) - f(x))^2) over the feature
dimensions, with f the frozen feature network (`classifiers.load_feature_extractor`:
the MobileNet-v1 1.0 embedding extractor's float rebuild for ImageNet, a Keras network
for CIFAR-10). At x_adv = x the gradient of that distance is exactly zero, so the
attack always starts from a uniform random point of the eps ball; then `steps` signed
gradient steps of `step_size` (default 2.5 * eps / steps, as PGD), each projected into
the eps L-inf ball around x and into [0, 1], so max |x_adv - x| <= eps holds exactly.
"""

from __future__ import annotations

import math
from typing import Callable, Dict

import tensorflow as tf

from cdgan_tf.attacks import draws
from cdgan_tf.common import errors

FeatureFn = Callable[[tf.Tensor], tf.Tensor]

_COMPILED: Dict[int, tuple] = {}
_CACHE_SIZE = 16


def _loop(feature_fn: FeatureFn, seed_rank: int):
  """The cached tf.function of the attack loop for this feature network and seed rank
  (1: one seed pair for the batch, 2: one per image)."""
  key = (id(feature_fn), seed_rank)
  if key in _COMPILED:
    return _COMPILED[key][1]

  @tf.function(reduce_retracing=True)
  def run(x, eps, alpha, steps, seed):
    target = tf.stop_gradient(tf.cast(feature_fn(x), tf.float32))
    start = draws.uniform(tf.shape(x), seed, -1.0, 1.0) * eps
    adv = tf.clip_by_value(x + start, 0.0, 1.0)
    for _ in tf.range(steps):
      with tf.GradientTape() as tape:
        tape.watch(adv)
        features = tf.cast(feature_fn(adv), tf.float32)
        distance = tf.reduce_mean(tf.square(features - target),
                                  axis=tf.range(1, tf.rank(features)))
        loss = tf.reduce_sum(distance)
      # A network traced before with a relaxed batch returns a [None, ...] gradient.
      grad = tf.ensure_shape(tape.gradient(loss, adv), x.shape)
      adv = adv + alpha * tf.sign(grad)
      adv = tf.clip_by_value(tf.clip_by_value(adv, x - eps, x + eps), 0.0, 1.0)
    return adv

  _COMPILED[key] = (feature_fn, run)  # Holding feature_fn keeps its id unique.
  while len(_COMPILED) > _CACHE_SIZE:
    _COMPILED.pop(next(iter(_COMPILED)))
  return run


def feature_distortion(feature_fn: FeatureFn, images, eps: float, steps: int = 10,
                       step_size=None, seed: int = 0) -> tf.Tensor:
  """Maximises the feature distance to the clean image inside the eps L-inf ball.

  Takes no label: only the images and the feature network.

  Args:
    feature_fn: Differentiable images float32 [N, H, W, 3] in [0, 1] -> features
      float32 [N, ...] (e.g. `classifiers.load_feature_extractor(spec)`). Pass the same
      object batch after batch: the compiled loop is cached per object.
    images: float32 [N, H, W, 3] in [0, 1], the clean images.
    eps: L-inf budget in [0, 1].
    steps: Signed gradient steps (>= 1).
    step_size: Step length; default 2.5 * eps / steps.
    seed: Seed of the random start (stateless: same seed, same result): an int, or
      int [N], one per image (`draws`: then an image's result does not depend on its
      batch mates).

  Returns:
    float32 [N, H, W, 3] in [0, 1] with max |x_adv - images| <= eps.

  Raises:
    ValueError: eps outside [0, 1], steps < 1, a bad step size, or a feature network
      without gradients.
  """
  eps = float(eps)
  if not (math.isfinite(eps) and 0.0 <= eps <= 1.0):
    raise errors.UsageError(f"eps={eps} must be in [0, 1] (L-inf on the [0, 1] pixel scale)")
  if int(steps) < 1:
    raise errors.UsageError(f"steps={steps} must be >= 1")
  step_size = 2.5 * eps / int(steps) if step_size is None else float(step_size)
  if not (math.isfinite(step_size) and step_size >= 0.0):
    raise errors.UsageError(f"step_size={step_size} must be a finite number >= 0")
  images = tf.cast(tf.convert_to_tensor(images), tf.float32)
  if images.shape.rank != 4:
    raise errors.UsageError(f"images must be [N, H, W, C], got shape {images.shape}")
  seed_t = draws.seed_pairs(seed, 104729)
  try:
    return _loop(feature_fn, seed_t.shape.rank)(images, tf.constant(eps, tf.float32),
                             tf.constant(step_size, tf.float32),
                             tf.constant(int(steps), tf.int32), seed_t)
  except (ValueError, TypeError) as e:
    if "None" in str(e):
      raise errors.UsageError("feature_fn is not differentiable with respect to its input "
                              f"(gradient is None): {e}") from e
    raise
