"""Each attack's update rule against a hand computation of its first two steps.

The classifier is a fixed two-class model whose input gradient is known in closed form:
logits = [a . x, b . cos(W x)] (sums over each image's pixels), so for the true class 0
the cross-entropy gradient is (p0 - 1) a - p1 W b sin(W x). With W = 20 its sign and
size change between the steps, so the normalisation, the momentum decay, the sign and
the projection all show in the result; each test also checks that the usual mistakes
give other images (so it would notice them).
"""

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.attacks import gradient as attacks

SHAPE = (2, 4, 4, 1)  # Two images: per-image normalisation matters.
W = 20.0
RNG = np.random.default_rng(0)
A = RNG.normal(size=SHAPE[1:])
B = RNG.normal(size=SHAPE[1:])
X0 = RNG.uniform(0.3, 0.7, size=SHAPE).astype(np.float32).astype(np.float64)
LABELS = np.array([0, 0])


def logits_fn(x):
  x = tf.cast(x, tf.float32)
  first = tf.reduce_sum(x * tf.constant(A, tf.float32), axis=[1, 2, 3])
  second = tf.reduce_sum(tf.cos(W * x) * tf.constant(B, tf.float32), axis=[1, 2, 3])
  return tf.stack([first, second], axis=1)


def hand_gradient(x):
  """d CE(class 0) / dx, by hand, per image: [N, H, W, C]."""
  logits = np.stack([(x * A).sum(axis=(1, 2, 3)),
                     (np.cos(W * x) * B).sum(axis=(1, 2, 3))], 1)
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  return ((p[:, 0] - 1.0)[:, None, None, None] * A
          - p[:, 1][:, None, None, None] * W * B * np.sin(W * x))


def hand_mifgsm(x0, eps, alpha, decay, steps=2, normalise="per_image_mean_abs"):
  x, g = x0.copy(), np.zeros_like(x0)
  for _ in range(steps):
    grad = hand_gradient(x)
    if normalise == "per_image_mean_abs":
      grad = grad / np.abs(grad).mean(axis=(1, 2, 3), keepdims=True)
    elif normalise == "batch_mean_abs":
      grad = grad / np.abs(grad).mean()
    g = decay * g + grad
    x = np.clip(np.clip(x + alpha * np.sign(g), x0 - eps, x0 + eps), 0.0, 1.0)
  return x


def hand_pgd(x0, eps, alpha, norm, steps=2):
  x = x0.copy()
  for _ in range(steps):
    grad = hand_gradient(x)
    if norm == "linf":
      x = np.clip(np.clip(x + alpha * np.sign(grad), x0 - eps, x0 + eps), 0.0, 1.0)
    else:
      step = grad / np.sqrt((grad ** 2).sum(axis=(1, 2, 3), keepdims=True))
      delta = x + alpha * step - x0
      norm_delta = np.sqrt((delta ** 2).sum(axis=(1, 2, 3), keepdims=True))
      x = np.clip(x0 + delta * np.minimum(1.0, eps / norm_delta), 0.0, 1.0)
  return x


def test_the_hand_gradient_is_the_autodiff_gradient():
  x = tf.constant(X0, tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(x)
    loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=LABELS, logits=logits_fn(x)))
  np.testing.assert_allclose(tape.gradient(loss, x), hand_gradient(X0), rtol=1e-4,
                             atol=1e-6)


@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_mifgsm_two_steps_by_hand(decay):
  eps, alpha = 0.25, 0.1
  got = attacks.mifgsm(logits_fn, X0.astype(np.float32), LABELS, eps, steps=2,
                       step_size=alpha, decay=decay).numpy()
  expected = hand_mifgsm(X0, eps, alpha, decay)
  np.testing.assert_allclose(got, expected, atol=1e-6)
  # What the usual mistakes give instead: each differs from the right answer.
  for wrong in (hand_mifgsm(X0, eps, alpha, decay, normalise="none"),
                hand_mifgsm(X0, eps, alpha, decay, normalise="batch_mean_abs"),
                hand_mifgsm(X0, eps, alpha, 1.0 - decay + 0.25),
                hand_mifgsm(X0, eps, alpha, decay, steps=1)):
    assert np.abs(wrong - expected).max() > 0.05


def test_pgd_linf_two_steps_by_hand():
  eps, alpha = 0.15, 0.1  # The second step is cut by the eps ball.
  got = attacks.pgd(logits_fn, X0.astype(np.float32), LABELS, eps, steps=2,
                    step_size=alpha, norm="linf", random_start=False).numpy()
  expected = hand_pgd(X0, eps, alpha, "linf")
  np.testing.assert_allclose(got, expected, atol=1e-6)
  assert np.abs(hand_pgd(X0, 1.0, alpha, "linf") - expected).max() > 0.04  # no projection
  assert np.abs(hand_pgd(X0, eps, alpha, "linf", steps=1) - expected).max() > 0.04


def test_pgd_l2_two_steps_by_hand():
  eps, alpha = 0.15, 0.12  # The second step leaves the L2 ball: projected.
  got = attacks.pgd(logits_fn, X0.astype(np.float32), LABELS, eps, steps=2,
                    step_size=alpha, norm="l2", random_start=False).numpy()
  expected = hand_pgd(X0, eps, alpha, "l2")
  np.testing.assert_allclose(got, expected, atol=1e-5)
  assert np.abs(hand_pgd(X0, 10.0, alpha, "l2") - expected).max() > 0.02
  assert np.abs(hand_pgd(X0, eps, alpha, "linf") - expected).max() > 0.02


def test_fgsm_one_step_by_hand():
  got = attacks.fgsm(logits_fn, X0.astype(np.float32), LABELS, 0.1).numpy()
  expected = np.clip(X0 + 0.1 * np.sign(hand_gradient(X0)), 0.0, 1.0)
  np.testing.assert_allclose(got, expected, atol=1e-6)
