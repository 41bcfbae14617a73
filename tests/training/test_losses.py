"""Tests of the losses against hand-computed numpy values (tf-gan losses_impl_test style)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import config
from cdgan_tf.training import losses

REAL = np.array([[2.0], [-1.0], [0.0]], "float32")
FAKE = np.array([[-3.0], [0.5], [0.0]], "float32")


def _softplus(x):
  return np.log1p(np.exp(x))


def _pair(seed=0):
  rng = np.random.default_rng(seed)
  return (rng.random((3, 4, 5, 3)).astype("float32"),
          rng.random((3, 4, 5, 3)).astype("float32"))


def test_content_loss_mse_and_l1():
  target, generated = _pair()
  np.testing.assert_allclose(losses.content_loss(target, generated, "mse"),
                             np.mean((target - generated) ** 2, axis=(1, 2, 3)),
                             rtol=1e-5)
  np.testing.assert_allclose(losses.content_loss(target, generated, "l1"),
                             np.mean(np.abs(target - generated), axis=(1, 2, 3)),
                             rtol=1e-5)
  # Literal value: a 0.1 offset everywhere -> MSE 0.01, L1 0.1.
  zeros = np.zeros((2, 2, 2, 3), "float32")
  np.testing.assert_allclose(losses.content_loss(zeros, zeros + 0.1), [0.01, 0.01],
                             rtol=1e-5)
  np.testing.assert_allclose(losses.content_loss(zeros, zeros + 0.1, "l1"), [0.1, 0.1],
                             rtol=1e-5)


def test_content_loss_errors():
  target, generated = _pair()
  with pytest.raises(ValueError, match="kind"):
    losses.content_loss(target, generated, "l2")
  with pytest.raises(ValueError, match="shape"):
    losses.content_loss(target, generated[:, :2])


def test_discriminator_loss_non_saturating():
  got = losses.discriminator_loss(REAL, FAKE, "non_saturating")
  assert got.shape == (3,) and got.dtype == tf.float32
  expected = _softplus(-REAL[:, 0]) + _softplus(FAKE[:, 0])
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  np.testing.assert_allclose(got[2], 2 * np.log(2.0), rtol=1e-5)  # D = 0 on both.
  # Same as sigmoid cross-entropy with labels 1 (real) and 0 (fake).
  xent = (tf.nn.sigmoid_cross_entropy_with_logits(tf.ones(3), REAL[:, 0])
          + tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros(3), FAKE[:, 0]))
  np.testing.assert_allclose(got, xent, rtol=1e-5)


def test_discriminator_loss_least_squares():
  got = losses.discriminator_loss(REAL, FAKE, "least_squares")
  np.testing.assert_allclose(got, [1.0 + 9.0, 4.0 + 0.25, 1.0], rtol=1e-6)


def test_generator_adversarial_loss():
  np.testing.assert_allclose(losses.generator_adversarial_loss(FAKE, "non_saturating"),
                             _softplus(-FAKE[:, 0]), rtol=1e-5)
  np.testing.assert_allclose(losses.generator_adversarial_loss(FAKE, "least_squares"),
                             [16.0, 0.25, 1.0], rtol=1e-6)


def test_logit_shapes_dtypes_and_stability():
  flat = losses.discriminator_loss(REAL[:, 0], FAKE[:, 0])
  np.testing.assert_allclose(flat, losses.discriminator_loss(REAL, FAKE))
  half = losses.generator_adversarial_loss(FAKE.astype("float16"))
  assert half.dtype == tf.float32
  big = losses.discriminator_loss(np.array([-100.0, 100.0], "float32"),
                                  np.array([100.0, -100.0], "float32"))
  np.testing.assert_allclose(big, [200.0, 0.0], atol=1e-5)
  with pytest.raises(ValueError, match="shape"):
    losses.generator_adversarial_loss(np.zeros((2, 2), "float32"))
  with pytest.raises(ValueError, match="kind"):
    losses.discriminator_loss(REAL, FAKE, "wasserstein")


def test_adversarial_gradients_point_the_right_way():
  fake = tf.Variable([0.3, 0.2])  # In (0, 1), where both kinds agree on the sign.
  real = tf.Variable([0.1, 0.4])
  for kind in config.ADVERSARIAL_LOSSES:
    with tf.GradientTape() as tape:
      g_loss = tf.reduce_sum(losses.generator_adversarial_loss(fake, kind))
    # The generator wants larger fake logits.
    assert np.all(tape.gradient(g_loss, fake).numpy() < 0)
    with tf.GradientTape(persistent=True) as tape:
      d_loss = tf.reduce_sum(losses.discriminator_loss(real, fake, kind))
    # The discriminator wants larger real and smaller fake logits.
    assert np.all(tape.gradient(d_loss, real).numpy() < 0)
    assert np.all(tape.gradient(d_loss, fake).numpy() > 0)


def _pool_extractor(size=4):
  inputs = keras.Input((size, size, 3))
  return keras.Model(inputs, keras.layers.AveragePooling2D(2)(inputs))


def _numpy_pool(x):
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def test_feature_loss_single_output():
  target, generated = (a[:, :4, :4] for a in _pair(1))
  got = losses.feature_loss(_pool_extractor(), target, generated)
  expected = np.mean((_numpy_pool(target) - _numpy_pool(generated)) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_feature_loss_sums_over_outputs_and_stops_target_gradient():
  inputs = keras.Input((4, 4, 3))
  extractor = keras.Model(inputs, [keras.layers.AveragePooling2D(2)(inputs),
                                   keras.layers.Identity()(inputs)])
  target, generated = (a[:, :4, :4] for a in _pair(2))
  expected = (np.mean((_numpy_pool(target) - _numpy_pool(generated)) ** 2, axis=(1, 2, 3))
              + np.mean((target - generated) ** 2, axis=(1, 2, 3)))
  t, g = tf.Variable(target), tf.Variable(generated)
  with tf.GradientTape(persistent=True) as tape:
    got = losses.feature_loss(extractor, t, g)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert tape.gradient(got, t) is None
  assert tape.gradient(got, g) is not None


class _MustNotBeCalled:

  def __call__(self, *args, **kwargs):
    raise AssertionError("feature extractor called although its weight is 0")


def test_generator_loss_weights_and_parts():
  target, generated = _pair(3)
  cfg = config.LossConfig(content_loss="l1", adversarial_loss="least_squares",
                          content_weight=2.0, adversarial_weight=0.5)
  parts = losses.generator_loss(target, generated, FAKE, cfg,
                                feature_extractor=_MustNotBeCalled())
  assert set(parts) == {"total", "content", "adversarial", "feature"}
  content = np.mean(np.abs(target - generated), axis=(1, 2, 3))
  adversarial = (FAKE[:, 0] - 1.0) ** 2
  np.testing.assert_allclose(parts["content"], content, rtol=1e-5)
  np.testing.assert_allclose(parts["adversarial"], adversarial, rtol=1e-5)
  np.testing.assert_array_equal(parts["feature"], np.zeros(3))
  np.testing.assert_allclose(parts["total"], 2.0 * content + 0.5 * adversarial,
                             rtol=1e-5)
  for value in parts.values():
    assert value.shape == (3,) and value.dtype == tf.float32


def test_generator_loss_with_feature_extractor():
  target, generated = (a[:, :4, :4] for a in _pair(4))
  cfg = config.LossConfig(adversarial_weight=1e-3, feature_weight=0.25)
  parts = losses.generator_loss(target, generated, FAKE[:, 0], cfg,
                                feature_extractor=_pool_extractor())
  feature = np.mean((_numpy_pool(target) - _numpy_pool(generated)) ** 2, axis=(1, 2, 3))
  content = np.mean((target - generated) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(parts["feature"], feature, rtol=1e-5)
  np.testing.assert_allclose(
      parts["total"], content + 1e-3 * _softplus(-FAKE[:, 0]) + 0.25 * feature,
      rtol=1e-5)
  # The trainer's multi-replica reduction works on these per-example losses.
  avg = tf.nn.compute_average_loss(parts["total"], global_batch_size=6)
  np.testing.assert_allclose(avg, np.sum(parts["total"]) / 6, rtol=1e-5)
