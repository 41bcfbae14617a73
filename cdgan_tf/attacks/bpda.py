"""BPDA: attack a purifier without useful gradients through the identity.

Athalye et al., "Obfuscated gradients give a false sense of security", 2018.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from cdgan_tf import image_ops


def bpda(purifier_fn: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[tf.Tensor], tf.Tensor]:
  """Backward-pass differentiable approximation with the identity (Athalye et al. 2018).

  The returned function runs `purifier_fn` forward and passes the incoming gradient
  through unchanged backward, so `lambda x: classifier(bpda(purifier)(x))` can be
  attacked with PGD even when the purifier is not differentiable (JPEG, bit depth).
  The gradient an attack sees is the classifier's gradient at the purified point.

  A purifier that changes the size (CD-GAN returns its working size, e.g. 256 for a
  224 input) is approximated by the bicubic resize to its output size instead of the
  identity: the gradient is mapped back to the input's size through that resize's
  adjoint (the same antialiased bicubic map as `image_ops.resize`, without clipping).

  Args:
    purifier_fn: images float32 [N, H, W, C] in [0, 1] -> [N, H', W', C] in [0, 1]
      (H' = H and W' = W for the baselines).

  Returns:
    A callable with the same forward values and an identity gradient.
  """

  @tf.custom_gradient
  def purify(images):
    purified = tf.cast(purifier_fn(tf.stop_gradient(images)), images.dtype)

    def grad(upstream, variables=None):
      gradient = _to_input_size(upstream, images)
      if variables:
        return gradient, [None] * len(variables)
      return gradient

    return purified, grad

  def apply(images):
    return purify(tf.convert_to_tensor(images, tf.float32))

  apply.purifier = purifier_fn
  return apply


def _to_input_size(upstream: tf.Tensor, images: tf.Tensor) -> tf.Tensor:
  """The identity's gradient, or the bicubic resize's when the purifier changed the size.

  Args:
    upstream: float32 [N, H', W', C], the gradient at the purified images.
    images: float32 [N, H, W, C], the purifier's input.

  Returns:
    float32 [N, H, W, C]: `upstream` itself when H' = H and W' = W are known to be
    equal, else the vector-Jacobian product of resizing `images` to (H', W').
  """
  in_hw, out_hw = images.shape[1:3], upstream.shape[1:3]
  if in_hw.is_fully_defined() and out_hw.is_fully_defined() and in_hw == out_hw:
    return upstream
  with tf.GradientTape() as tape:
    tape.watch(images)
    resized = tf.image.resize(images, tf.shape(upstream)[1:3],
                              method=image_ops.RESIZE_METHOD, antialias=True)
  return tape.gradient(resized, images, output_gradients=upstream)
