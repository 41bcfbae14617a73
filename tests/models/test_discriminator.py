"""Tests of the SRGAN-style discriminator."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.models import discriminator


def _convs(model):
  return [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]


@pytest.mark.parametrize("size,stages,last_side", [
    (8, 2, 2), (16, 3, 2), (32, 4, 2), (64, 4, 4), (256, 4, 16)])
def test_shapes_stages_and_filters(size, stages, last_side):
  model = discriminator.build_discriminator(size, filters=4)
  x = np.random.default_rng(0).random((2, size, size, 3)).astype("float32")
  logits = model(x)
  assert logits.shape == (2, 1) and logits.dtype == tf.float32
  convs = _convs(model)
  assert [c.strides[0] for c in convs] == [1, 2] * stages
  # Filters double per stride-2 stage: 4, 4, 8, 8, 16, 16, 32, 32.
  assert [c.filters for c in convs] == [4 * 2 ** (i // 2) for i in range(2 * stages)]
  assert model.get_layer("flatten").output.shape[1:] == (
      last_side * last_side * convs[-1].filters,)
  dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
  assert len(dense) == 1 and dense[0].units == 1


def test_filters_capped_at_eight_times():
  assert discriminator.num_stages(1024) == 4  # never more than SRGAN's 4 stages
  model = discriminator.build_discriminator(256, filters=2)
  assert max(c.filters for c in _convs(model)) == 16


def test_no_batch_norm_after_first_conv_only():
  model = discriminator.build_discriminator(16, filters=4)
  bns = [l.name for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert len(bns) == len(_convs(model)) - 1
  assert not any(n.startswith("stage0_s1") for n in bns)


def test_input_is_mapped_to_generator_range():
  model = discriminator.build_discriminator(8, filters=4)
  first = keras.Model(model.input, model.get_layer("to_generator_range").output)
  x = np.zeros((1, 8, 8, 3), "float32")
  x[0, 0, 0] = [0.0, 0.5, 1.0]
  np.testing.assert_allclose(first(x)[0, 0, 0], [-1.0, 0.0, 1.0])


@pytest.mark.parametrize("size", [0, 1, -8])
def test_bad_size_is_refused(size):
  with pytest.raises(ValueError, match="image_size"):
    discriminator.build_discriminator(size)


def test_wrong_input_size_is_refused():
  model = discriminator.build_discriminator(16, filters=4)
  with pytest.raises(ValueError):
    model(np.zeros((1, 32, 32, 3), "float32"))


def test_mixed_precision_logits_are_float32():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = discriminator.build_discriminator(16, filters=4)
    assert _convs(model)[0].compute_dtype == "float16"
    assert model(np.zeros((1, 16, 16, 3), "float32")).dtype == tf.float32
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_trainable_separates_two_constant_images():
  # A few SGD steps must be enough to tell black from white images apart, which
  # needs working gradients through the whole stack.
  keras.utils.set_random_seed(0)  # Fixed initial weights.
  model = discriminator.build_discriminator(8, filters=4)
  x = np.concatenate([np.zeros((4, 8, 8, 3)), np.ones((4, 8, 8, 3))]).astype("float32")
  y = np.array([0.0] * 4 + [1.0] * 4, "float32")[:, None]
  opt = keras.optimizers.SGD(0.05)
  for _ in range(30):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
          y, model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None for g in grads)
    opt.apply_gradients(zip(grads, model.trainable_weights))
  logits = model(x, training=False).numpy()[:, 0]
  assert logits[4:].min() > logits[:4].max()
