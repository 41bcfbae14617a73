"""The label-free members of an attack mix: noise and feature distortion, by value."""

import inspect
import math

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.attacks import feature_distortion
from cdgan_tf.attacks import noise

EPS = 8 / 255


def _grey(n=4, size=32, value=0.5):
  return np.full((n, size, size, 3), value, np.float32)


def test_uniform_noise_is_uniform_in_the_budget():
  x = _grey()
  delta = np.asarray(noise.noise(x, EPS, "uniform", seed=3)) - x
  assert np.abs(delta).max() <= EPS + 1e-7
  # U(-e, e): mean 0, std e / sqrt(3), and it reaches close to both ends.
  assert abs(delta.mean()) < 0.02 * EPS
  assert delta.std() == pytest.approx(EPS / math.sqrt(3), rel=0.03)
  assert delta.min() < -0.99 * EPS and delta.max() > 0.99 * EPS


def test_gaussian_noise_is_clipped_normal_with_sigma_half_eps():
  x = _grey(n=8)
  delta = np.asarray(noise.noise(x, EPS, "gaussian", seed=5)) - x
  assert np.abs(delta).max() <= EPS + 1e-7
  # N(0, s^2) clipped at +-2s: P(|X| >= 2s) = 1 - erf(2 / sqrt 2) = 4.55 %, and
  # E[X^2] = s^2 (P(|Z| < 2) - 4 phi(2)) + 4 s^2 P(|Z| >= 2) = 0.9205 s^2.
  sigma = EPS / 2
  tail = 1 - math.erf(2 / math.sqrt(2))
  phi2 = math.exp(-2) / math.sqrt(2 * math.pi)
  expected_std = sigma * math.sqrt((1 - tail) - 4 * phi2 + 4 * tail)
  assert delta.std() == pytest.approx(expected_std, rel=0.03)
  assert np.mean(np.abs(delta) >= EPS - 1e-7) == pytest.approx(tail, abs=0.006)


def test_noise_ignores_the_image_and_repeats_with_the_seed():
  a, b = _grey(value=0.3), _grey(value=0.6)
  da = np.asarray(noise.noise(a, EPS, "uniform", seed=1)) - a
  db = np.asarray(noise.noise(b, EPS, "uniform", seed=1)) - b
  np.testing.assert_allclose(da, db, atol=1e-6)  # Same draw whatever the content.
  again = np.asarray(noise.noise(a, EPS, "uniform", seed=1)) - a
  np.testing.assert_array_equal(da, again)
  other = np.asarray(noise.noise(a, EPS, "uniform", seed=2)) - a
  assert np.abs(other - da).mean() > 0.1 * EPS


def test_noise_stays_in_range_and_rejects_bad_arguments():
  x = np.zeros((1, 8, 8, 3), np.float32)
  out = np.asarray(noise.noise(x, EPS, "gaussian"))
  assert out.min() >= 0.0 and out.max() <= EPS + 1e-7
  with pytest.raises(ValueError, match="kind"):
    noise.noise(x, EPS, "salt")
  with pytest.raises(ValueError, match="eps"):
    noise.noise(x, 8.0, "uniform")


def _feature_net(seed=0):
  """A fixed random conv + ReLU feature map [N, 16, 16, 8] (a Keras layer, frozen)."""
  kernel = tf.constant(np.random.default_rng(seed).normal(0, 0.5, (3, 3, 3, 8)), tf.float32)

  def features(images):
    y = tf.nn.conv2d(images, kernel, strides=2, padding="SAME")
    return tf.nn.relu(y)
  return features


def _distance(f, a, b):
  return float(tf.reduce_mean(tf.square(f(tf.constant(a)) - f(tf.constant(b)))))


def test_feature_distortion_moves_the_embedding_within_the_budget():
  f = _feature_net()
  x = np.random.default_rng(1).uniform(0.2, 0.8, (3, 32, 32, 3)).astype(np.float32)
  adv = np.asarray(feature_distortion.feature_distortion(f, x, EPS, steps=10, seed=0))
  assert np.abs(adv - x).max() <= EPS + 1e-7
  assert adv.min() >= 0.0 and adv.max() <= 1.0
  moved = _distance(f, adv, x)
  random = _distance(f, np.asarray(noise.noise(x, EPS, "uniform", seed=0)), x)
  # Ascending the distance beats a random point of the same ball by a wide margin.
  assert moved > 5.0 * random, (moved, random)


def test_feature_distortion_takes_no_label_and_is_deterministic():
  parameters = inspect.signature(feature_distortion.feature_distortion).parameters
  assert not any("label" in name for name in parameters)
  f = _feature_net()
  x = np.random.default_rng(2).uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
  a = np.asarray(feature_distortion.feature_distortion(f, x, EPS, steps=3, seed=7))
  b = np.asarray(feature_distortion.feature_distortion(f, x, EPS, steps=3, seed=7))
  c = np.asarray(feature_distortion.feature_distortion(f, x, EPS, steps=3, seed=8))
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 0


def test_feature_distortion_rejects_bad_arguments():
  f = _feature_net()
  x = np.zeros((1, 8, 8, 3), np.float32)
  with pytest.raises(ValueError, match="eps"):
    feature_distortion.feature_distortion(f, x, 4.0)
  with pytest.raises(ValueError, match="steps"):
    feature_distortion.feature_distortion(f, x, EPS, steps=0)
