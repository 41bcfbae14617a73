"""Per-image seeds: an image's attack does not depend on its batch mates.

Each attack is run on a batch with one seed per image and on every image alone (a
batch of one with that image's seed as the scalar seed); the results must match,
whatever the batch order. Scalar seeds keep their draws (checked against the
stateless draw written out by hand), so data made before per-image seeds is unchanged.
"""

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.attacks import draws
from cdgan_tf.attacks import feature_distortion
from cdgan_tf.attacks import gradient
from cdgan_tf.attacks import noise
from cdgan_tf.common import errors

SEEDS = np.array([11, 2**62 + 5, 7], np.int64)


def _images(n=3, side=12):
  return np.random.default_rng(0).uniform(0.1, 0.9, (n, side, side, 3)).astype("float32")


_WEIGHTS = tf.constant(np.random.default_rng(1).normal(size=(12 * 12 * 3, 5)), tf.float32)


def _logits(x):
  """A fixed linear classifier of [N, 12, 12, 3] images (differentiable, 5 classes)."""
  return tf.reshape(x, [tf.shape(x)[0], -1]) @ _WEIGHTS


def _features(x):
  """A fixed feature map: a nonlinear function of the linear logits."""
  return tf.tanh(_logits(x) / 10.0)


ATTACKS = {
    "pgd": lambda x, y, s: gradient.pgd(_logits, x, y, 8 / 255, steps=3, seed=s),
    "pgd_l2": lambda x, y, s: gradient.pgd(_logits, x, y, 0.5, steps=3, norm="l2", seed=s),
    "mifgsm_di": lambda x, y, s: gradient.mifgsm(_logits, x, y, 8 / 255, steps=3,
                                                 diversity_prob=1.0, seed=s),
    "uniform": lambda x, y, s: noise.noise(x, 8 / 255, "uniform", seed=s),
    "gaussian": lambda x, y, s: noise.noise(x, 8 / 255, "gaussian", seed=s),
    "feature": lambda x, y, s: feature_distortion.feature_distortion(
        _features, x, 8 / 255, steps=3, seed=s),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_an_images_attack_does_not_depend_on_its_batch(name):
  attack, images = ATTACKS[name], _images()
  labels = np.array([0, 3, 1], np.int64)
  batch = np.asarray(attack(images, labels, SEEDS))
  order = [2, 0, 1]
  shuffled = np.asarray(attack(images[order], labels[order], SEEDS[order]))
  np.testing.assert_allclose(shuffled, batch[order], atol=1e-6)
  for i in range(3):
    alone = np.asarray(attack(images[i:i + 1], labels[i:i + 1], int(SEEDS[i])))
    np.testing.assert_allclose(batch[i:i + 1], alone, atol=1e-6)
  assert np.abs(batch - images).max() > 1e-3  # the attack did something


@pytest.mark.parametrize("name", ["pgd", "mifgsm_di", "uniform", "feature"])
def test_each_image_draws_its_own_randomness(name):
  """The same image twice: equal with equal seeds, different with different ones (a
  per-batch seed would draw one start / one diversity transform for both)."""
  attack = ATTACKS[name]
  twice, labels = np.repeat(_images(1), 2, axis=0), np.array([2, 2], np.int64)
  same = np.asarray(attack(twice, labels, np.array([5, 5])))
  np.testing.assert_allclose(same[0], same[1], atol=1e-6)
  different = np.asarray(attack(twice, labels, np.array([5, 6])))
  assert np.abs(different[0] - different[1]).max() > 1e-3


def test_scalar_seeds_keep_their_draws():
  """The random start and the noise from an int seed are the stateless draws of the
  seed pairs the attacks used before per-image seeds (same data as before)."""
  images = _images(2)
  eps = 8 / 255
  start = gradient.pgd(_logits, images, np.zeros(2, np.int64), eps, steps=1,
                       step_size=0.0, seed=9)
  expected = np.clip(images + eps * tf.random.stateless_uniform(
      images.shape, [9 * 1000003 + 1, 0], -1.0, 1.0).numpy(), 0, 1)
  np.testing.assert_allclose(start, expected, atol=1e-6)
  uniform = noise.noise(images, eps, "uniform", seed=4)
  expected = np.clip(images + tf.random.stateless_uniform(
      images.shape, [4, 7919], -eps, eps).numpy(), 0, 1)
  np.testing.assert_allclose(uniform, expected, atol=1e-6)


def test_seed_pairs_and_bad_seeds():
  assert draws.seed_pairs(3, 7).numpy().tolist() == [3, 7]
  assert draws.seed_pairs([3, 2**63], 7).numpy().tolist() == [[3, 7], [1, 7]]
  with pytest.raises(errors.UsageError, match="expected an int or one per image"):
    draws.seed_pairs(np.zeros((2, 2)), 7)
  with pytest.raises(errors.UsageError, match="expected a scalar or one seed per image"):
    gradient.pgd(_logits, _images(2), np.zeros(2, np.int64), 0.1, seed=np.zeros((2, 2)))
