"""Per-example losses of the CD-GAN generators and discriminators.

The CD-GAN paper does not state its losses. These follow SRGAN (Ledig et al., 2017):
a pixel content loss, an adversarial loss and an optional feature ("perceptual") loss.

Every function returns PER-EXAMPLE losses of shape [N], computed in float32 (inputs in
float16/bfloat16 under mixed precision are cast first). The trainer reduces them with
`tf.nn.compute_average_loss(per_example, global_batch_size=...)`, which is correct
across replicas. Discriminator logits may be given as [N, 1] or [N].
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import tensorflow as tf

from cdgan_tf import config
from cdgan_tf.common import checks
from cdgan_tf.common import errors

CONTENT_KINDS = config.CONTENT_LOSSES
ADVERSARIAL_KINDS = config.ADVERSARIAL_LOSSES


def _check_kind(what: str, kind: str, kinds) -> None:
  checks.check_choice(f"{what} kind", kind, kinds)


def _logits(logits: tf.Tensor, what: str) -> tf.Tensor:
  """[N, 1] or [N] logits -> float32 [N]."""
  logits = tf.cast(tf.convert_to_tensor(logits), tf.float32)
  if logits.shape.rank == 2:
    if logits.shape[-1] not in (None, 1):
      raise errors.UsageError(f"{what} must have shape [N, 1] or [N], got {logits.shape}")
    return tf.reshape(logits, [-1])
  if logits.shape.rank != 1:
    raise errors.UsageError(f"{what} must have shape [N, 1] or [N], got {logits.shape}")
  return logits


def _per_example_mean(x: tf.Tensor) -> tf.Tensor:
  """Mean over every axis but the first: [N, ...] -> [N]."""
  return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def content_loss(target: tf.Tensor, generated: tf.Tensor, kind: str = "mse") -> tf.Tensor:
  """Pixel loss between the clean target and the generated image.

  Args:
    target: [N, H, W, C] clean images in [0, 1].
    generated: [N, H, W, C] generated images in [0, 1].
    kind: "mse" (mean squared error, SRGAN's content loss) or "l1" (mean absolute
      error).

  Returns:
    float32 [N], the mean over H, W and C.

  Raises:
    ValueError: unknown kind, or static shapes that differ.
  """
  _check_kind("content loss", kind, CONTENT_KINDS)
  target = tf.cast(tf.convert_to_tensor(target), tf.float32)
  generated = tf.cast(tf.convert_to_tensor(generated), tf.float32)
  if not target.shape.is_compatible_with(generated.shape):
    raise errors.UsageError(f"content loss: target shape {target.shape} differs from "
                            f"generated shape {generated.shape}")
  diff = target - generated
  return _per_example_mean(tf.square(diff) if kind == "mse" else tf.abs(diff))


def discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor,
                       kind: str = "non_saturating") -> tf.Tensor:
  """Discriminator loss on a batch of real (clean) and fake (generated) images.

  - "non_saturating": the original GAN discriminator loss (Goodfellow et al., 2014,
    "Generative Adversarial Nets"), i.e. sigmoid cross-entropy with label 1 for real
    and 0 for fake: softplus(-D(real)) + softplus(D(fake)).
  - "least_squares": LSGAN (Mao et al., 2017, "Least Squares Generative Adversarial
    Networks") with a = 0, b = c = 1 on the raw logits: (D(real) - 1)^2 + D(fake)^2.
    The constant factor is 1 here; the paper (and tf-gan's
    `least_squares_discriminator_loss`) uses 1/2. The factor only rescales gradients.

  Args:
    real_logits: [N, 1] or [N] logits of the discriminator on real images.
    fake_logits: [N, 1] or [N] logits on generated images (same N).
    kind: "non_saturating" or "least_squares".

  Returns:
    float32 [N].
  """
  _check_kind("adversarial loss", kind, ADVERSARIAL_KINDS)
  real = _logits(real_logits, "real_logits")
  fake = _logits(fake_logits, "fake_logits")
  if kind == "non_saturating":
    return tf.nn.softplus(-real) + tf.nn.softplus(fake)
  return tf.square(real - 1.0) + tf.square(fake)


def generator_adversarial_loss(fake_logits: tf.Tensor,
                               kind: str = "non_saturating") -> tf.Tensor:
  """Adversarial part of the generator loss.

  - "non_saturating": -log(sigmoid(D(fake))) = softplus(-D(fake)), Goodfellow et al.
    (2014), section 3 (the non-saturating variant of min log(1 - D(G(z)))).
  - "least_squares": (D(fake) - 1)^2, Mao et al. (2017) with c = 1, factor 1 (the paper
    uses 1/2).

  Args:
    fake_logits: [N, 1] or [N] logits of the discriminator on generated images.
    kind: "non_saturating" or "least_squares".

  Returns:
    float32 [N].
  """
  _check_kind("adversarial loss", kind, ADVERSARIAL_KINDS)
  fake = _logits(fake_logits, "fake_logits")
  if kind == "non_saturating":
    return tf.nn.softplus(-fake)
  return tf.square(fake - 1.0)


def _as_list(features):
  if isinstance(features, dict):
    return [features[k] for k in sorted(features)]
  if isinstance(features, (list, tuple)):
    return list(features)
  return [features]


def feature_loss(feature_extractor: Callable, target: tf.Tensor,
                 generated: tf.Tensor) -> tf.Tensor:
  """MSE between the features of a user-given network (SRGAN's "VGG loss").

  Args:
    feature_extractor: A callable taking [N, H, W, 3] float32 images in [0, 1] and
      returning one feature tensor [N, ...], or a list/dict of them; it does its own
      preprocessing (e.g. VGG's mean subtraction) and runs in inference mode
      (`cdgan_tf.classifiers.features`).
    target: [N, H, W, 3] clean images in [0, 1].
    generated: [N, H, W, 3] generated images in [0, 1].

  Returns:
    float32 [N]: for each example, the mean squared difference of each feature tensor,
    summed over the feature tensors. Gradients flow only through `generated`.
  """
  target = tf.cast(tf.convert_to_tensor(target), tf.float32)
  generated = tf.cast(tf.convert_to_tensor(generated), tf.float32)
  target_features = _as_list(feature_extractor(target))
  generated_features = _as_list(feature_extractor(generated))
  total = 0.0
  for t, g in zip(target_features, generated_features):
    t = tf.stop_gradient(tf.cast(t, tf.float32))
    total += _per_example_mean(tf.square(t - tf.cast(g, tf.float32)))
  return total


def generator_loss(target: tf.Tensor, generated: tf.Tensor, fake_logits: tf.Tensor,
                   loss_config: config.LossConfig,
                   feature_extractor: Optional[Callable] = None
                   ) -> Dict[str, tf.Tensor]:
  """The weighted generator objective and its parts.

  total = content_weight * content + adversarial_weight * adversarial
          + feature_weight * feature.

  Args:
    target: [N, H, W, 3] clean images in [0, 1].
    generated: [N, H, W, 3] generator outputs in [0, 1].
    fake_logits: [N, 1] or [N] discriminator logits on `generated`.
    loss_config: Kinds and weights.
    feature_extractor: Optional model for `feature_loss`; the feature part is zeros
      when it is None or feature_weight is 0 (and then the extractor is not called).

  Returns:
    dict of float32 [N] tensors: "total", "content", "adversarial", "feature"
    (the parts unweighted).
  """
  content = content_loss(target, generated, loss_config.content_loss)
  adversarial = generator_adversarial_loss(fake_logits, loss_config.adversarial_loss)
  if feature_extractor is not None and loss_config.feature_weight:
    feature = feature_loss(feature_extractor, target, generated)
  else:
    feature = tf.zeros_like(content)
  total = (loss_config.content_weight * content
           + loss_config.adversarial_weight * adversarial
           + loss_config.feature_weight * feature)
  return {"total": total, "content": content, "adversarial": adversarial,
          "feature": feature}
