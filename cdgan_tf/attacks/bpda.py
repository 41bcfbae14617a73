"""BPDA: attack a purifier without useful gradients through the identity.

Athalye et al., "Obfuscated gradients give a false sense of security", 2018.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf


def bpda(purifier_fn: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[tf.Tensor], tf.Tensor]:
  """Backward-pass differentiable approximation with the identity (Athalye et al. 2018).

  The returned function runs `purifier_fn` forward and passes the incoming gradient
  through unchanged backward, so `lambda x: classifier(bpda(purifier)(x))` can be
  attacked with PGD even when the purifier is not differentiable (JPEG, bit depth).
  The gradient an attack sees is the classifier's gradient at the purified point.

  Args:
    purifier_fn: images float32 [N, H, W, C] in [0, 1] -> the same shape in [0, 1].

  Returns:
    A callable with the same forward values and an identity gradient.
  """

  @tf.custom_gradient
  def purify(images):
    purified = tf.cast(purifier_fn(tf.stop_gradient(images)), images.dtype)

    def grad(upstream, variables=None):
      if variables:
        return upstream, [None] * len(variables)
      return upstream

    return purified, grad

  def apply(images):
    return purify(tf.convert_to_tensor(images, tf.float32))

  apply.purifier = purifier_fn
  return apply
