"""Randomized purification: seeded draws, new randomness per call, the registry copies."""

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.defenses import baselines
from cdgan_tf.defenses import randomized


def _images():
  return tf.constant(np.random.default_rng(0).uniform(0.1, 0.9, [3, 16, 16, 3]), tf.float32)


def test_noise_is_seeded_and_new_at_every_call():
  images = _images()
  first = randomized.RandomizedPurifier(baselines.identity(), noise=0.05, seed=7)
  second = randomized.RandomizedPurifier(baselines.identity(), noise=0.05, seed=7)
  a1, a2 = first(images).numpy(), first(images).numpy()
  b1 = second(images).numpy()
  np.testing.assert_array_equal(a1, b1)  # same seed, same first draw
  assert not np.array_equal(a1, a2)  # a new call draws new noise
  seed = tf.constant([3, 4], tf.int64)
  np.testing.assert_array_equal(first(images, seed=seed), first(images, seed=seed))
  # The draw is the textbook one: clip(x + sigma * N(0, 1)) with the split seed.
  split = tf.random.experimental.stateless_split(seed, 2)
  want = tf.clip_by_value(images + 0.05 * tf.random.stateless_normal(images.shape, split[0]),
                          0, 1)
  np.testing.assert_allclose(first(images, seed=seed), want, atol=0)
  noise = a1 - images.numpy()
  assert 0.04 < noise.std() < 0.06 and a1.min() >= 0 and a1.max() <= 1
  third = randomized.RandomizedPurifier(baselines.identity(), noise=0.05, seed=8)
  assert not np.array_equal(third(images).numpy(), a1)  # another seed, another draw


def test_new_draws_inside_a_tf_function():
  purifier = randomized.RandomizedPurifier(baselines.identity(), noise=0.1, seed=0)
  fn = tf.function(purifier.__call__)
  images = _images()
  assert not np.array_equal(fn(images).numpy(), fn(images).numpy())
  assert int(purifier.calls.numpy()) == 2


def test_random_resize_keeps_the_size_and_varies():
  purifier = randomized.RandomizedPurifier(baselines.identity(), random_resize=True, seed=1)
  images = _images()
  outs = [purifier(images).numpy() for _ in range(6)]
  assert all(o.shape == (3, 16, 16, 3) for o in outs)
  assert len({o.tobytes() for o in outs}) > 1
  assert all(0 <= o.min() and o.max() <= 1 for o in outs)


def test_randomize_adds_named_copies_and_checks():
  defenses = {"identity": baselines.identity(), "bits4": baselines.make_baseline("bits4", 16, 4)}
  result = randomized.randomize(defenses, ["bits4"], noise=0.03)
  assert list(result) == ["identity", "bits4", "bits4_rand"]
  assert result["bits4_rand"].differentiable is False
  with pytest.raises(ValueError, match="--randomize"):
    randomized.randomize(defenses, ["cdgan"], noise=0.03)
  with pytest.raises(ValueError, match="noise"):
    randomized.RandomizedPurifier(baselines.identity(), noise=-1)
  with pytest.raises(ValueError, match="needs noise"):
    randomized.RandomizedPurifier(baselines.identity())
