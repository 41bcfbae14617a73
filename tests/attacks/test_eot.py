"""EOT: K samples average K gradients, checked on a purifier whose randomness is known."""

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.attacks import bpda
from cdgan_tf.attacks import eot
from cdgan_tf.attacks import gradient
from cdgan_tf.attacks import settings

SHAPE = [2, 4, 4, 3]
K = 3


class KnownNoise:
  """x + NOISES[i mod 3] at its i-th call: randomness the test can replay."""

  def __init__(self):
    rng = np.random.default_rng(1)
    self.noises = [tf.constant(rng.normal(0, 0.2, SHAPE), tf.float32) for _ in range(K)]
    self.calls = tf.Variable(0, dtype=tf.int64)

  def __call__(self, images):
    i = self.calls.assign_add(1) - 1
    return images + tf.gather(tf.stack(self.noises), i % K)


def _classifier():
  rng = np.random.default_rng(2)
  w = tf.constant(rng.normal(size=[48, 5]), tf.float32)
  # Nonlinear, so the gradient depends on the noise draw.
  return lambda x: tf.tanh(tf.reshape(x, [-1, 48]) @ w) * 3.0


def _hand_mean_gradient(classifier, images, labels, noises):
  grads = []
  for noise in noises:
    with tf.GradientTape() as tape:
      tape.watch(images)
      logits = classifier(images + noise)
      loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    grads.append(tape.gradient(loss, images))
  return sum(grads) / len(grads), grads


def _inputs():
  images = tf.constant(np.random.default_rng(3).uniform(0.2, 0.8, SHAPE), tf.float32)
  return images, tf.constant([1, 3], tf.int64)


def test_mean_gradient_averages_k_draws():
  purifier, classifier = KnownNoise(), _classifier()
  images, labels = _inputs()

  def one_draw():
    with tf.GradientTape() as tape:
      tape.watch(images)
      logits = classifier(purifier(images))
      loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    return tape.gradient(loss, images)

  got = eot.mean_gradient(one_draw, K)
  want, singles = _hand_mean_gradient(classifier, images, labels, purifier.noises)
  np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-7)
  assert int(purifier.calls.numpy()) == K
  assert not np.allclose(singles[0].numpy(), want.numpy(), atol=1e-3)  # draws differ


@pytest.mark.parametrize("through_bpda", [False, True])
def test_pgd_step_follows_the_mean_of_k_gradients(through_bpda):
  """One PGD step with eot_samples=K = clean + alpha * sign(mean of the K gradients)."""
  purifier, classifier = KnownNoise(), _classifier()
  images, labels = _inputs()
  if through_bpda:  # identity backward: the gradient at each purified point
    target = lambda x, b=bpda.bpda(purifier): classifier(b(x))  # noqa: E731
  else:
    target = lambda x: classifier(purifier(x))  # noqa: E731
  eps, alpha = 0.05, 0.02
  adv = gradient.pgd(target, images, labels, eps, steps=1, step_size=alpha,
                     random_start=False, eot_samples=K)
  mean, _ = _hand_mean_gradient(classifier, images, labels, purifier.noises)
  want = tf.clip_by_value(images + alpha * tf.sign(mean), 0.0, 1.0)
  np.testing.assert_allclose(adv.numpy(), want.numpy(), atol=1e-7)
  assert int(purifier.calls.numpy()) == K
  # One sample follows one draw only: a different step.
  single = gradient.pgd(target, images, labels, eps, steps=1, step_size=alpha,
                        random_start=False, eot_samples=1)
  assert not np.allclose(single.numpy(), want.numpy())


def test_eot_samples_are_checked():
  images, labels = _inputs()
  with pytest.raises(ValueError, match="eot_samples"):
    gradient.pgd(_classifier(), images, labels, 0.03, eot_samples=0)
  mifgsm = settings.AttackSettings.parse("mifgsm", "8/255")
  with pytest.raises(ValueError, match="eot_samples"):
    mifgsm.run(_classifier(), images, labels, eot_samples=2)
