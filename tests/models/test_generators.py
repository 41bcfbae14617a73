"""Tests of the sub- and super-resolution generators."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.models import generators


def _layer(model, base_name):
  return model.get_layer(generators.layer_prefix(model.name) + base_name)



def _images(shape, seed=0):
  return np.random.default_rng(seed).random(shape).astype("float32")


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_sub_generator_shapes_any_input_size(scale):
  model = generators.build_sub_generator(scale=scale, num_res_blocks=1, filters=8)
  for h, w in [(16, 16), (32, 16)]:  # One model, several sizes: fully convolutional.
    out = model(_images((2, h, w, 3)))
    assert out.shape == (2, h // scale, w // scale, 3)
    assert out.dtype == tf.float32


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_super_generator_shapes_any_input_size(scale):
  model = generators.build_super_generator(scale=scale, num_res_blocks=1, filters=8)
  for h, w in [(8, 8), (4, 12)]:
    out = model(_images((2, h, w, 3)))
    assert out.shape == (2, h * scale, w * scale, 3)
    assert out.dtype == tf.float32


@pytest.mark.parametrize("build", [generators.build_sub_generator,
                                   generators.build_super_generator])
@pytest.mark.parametrize("scale", [0, 3, 6, -2, 2.0, True])
def test_bad_scale_is_refused(build, scale):
  with pytest.raises(ValueError, match="power of 2"):
    build(scale=scale, num_res_blocks=1, filters=8)


def test_numpy_int_scale_is_accepted():
  model = generators.build_super_generator(np.int64(2), num_res_blocks=0, filters=4)
  assert model(_images((1, 4, 4, 3))).shape == (1, 8, 8, 3)


def test_outputs_stay_in_unit_range_for_extreme_inputs():
  model = generators.build_super_generator(scale=2, num_res_blocks=1, filters=8)
  # Large weights push tanh into saturation; the output must still be in [0, 1].
  _layer(model, "tail_conv").kernel.assign(
      100.0 * _layer(model, "tail_conv").kernel)
  out = model(np.stack([np.zeros((8, 8, 3)), np.ones((8, 8, 3))]).astype("float32"))
  assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
  assert float(tf.reduce_max(out)) > 0.99 or float(tf.reduce_min(out)) < 0.01


def test_range_conversion_happens_at_input_and_output():
  model = generators.build_sub_generator(scale=2, num_res_blocks=1, filters=8)
  to_range = keras.Model(model.input, _layer(model, "to_generator_range").output)
  np.testing.assert_allclose(to_range(np.array([[[[0.0, 0.5, 1.0]]]], "float32")),
                             [[[[-1.0, 0.0, 1.0]]]])
  # A zero tail conv gives tanh(0) = 0, i.e. mid-grey 0.5 in [0, 1].
  tail = _layer(model, "tail_conv")
  tail.kernel.assign(tf.zeros_like(tail.kernel))
  tail.bias.assign(tf.zeros_like(tail.bias))
  np.testing.assert_allclose(model(_images((1, 8, 8, 3))), 0.5)


def test_architecture_counts():
  model = generators.build_super_generator(scale=4, num_res_blocks=3, filters=8)
  names = [layer.name for layer in model.layers]
  prefix = generators.layer_prefix(model.name)
  assert sum(n.endswith("_add") and n.startswith(prefix + "res") for n in names) == 3
  shuffles = [l for l in model.layers if isinstance(l, generators.PixelShuffle)]
  assert len(shuffles) == 2
  prelus = [l for l in model.layers if isinstance(l, keras.layers.PReLU)]
  assert prelus and all(p.shared_axes == [1, 2] for p in prelus)
  assert all(tuple(p.alpha.shape) == (1, 1, 8) for p in prelus)
  assert _layer(model, "head_conv").kernel.shape == (9, 9, 3, 8)
  assert _layer(model, "tail_conv").kernel.shape == (9, 9, 8, 3)

  sub = generators.build_sub_generator(scale=8, num_res_blocks=2, filters=8)
  strided = [l for l in sub.layers
             if isinstance(l, keras.layers.Conv2D) and l.strides == (2, 2)]
  assert len(strided) == 3
  assert not any(isinstance(l, generators.PixelShuffle) for l in sub.layers)


def _srgan_param_count(num_res_blocks, filters, up_steps, down_steps):
  conv = lambda k, cin, cout: k * k * cin * cout + cout
  bn = 4 * filters  # gamma, beta, moving mean, moving variance
  head = conv(9, 3, filters) + filters
  block = 2 * conv(3, filters, filters) + 2 * bn + filters
  trunk = conv(3, filters, filters) + bn
  up = conv(3, filters, 4 * filters) + filters
  down = conv(3, filters, filters) + filters
  tail = conv(9, filters, 3)
  return (head + num_res_blocks * block + trunk + up_steps * up + down_steps * down
          + tail)


def test_default_parameter_counts_match_srgan_layout():
  # Default SRGAN generator (16 blocks, 64 filters, x4): 1,554,883 parameters.
  assert generators.build_super_generator().count_params() == 1_554_883
  assert _srgan_param_count(16, 64, 2, 0) == 1_554_883
  assert (generators.build_sub_generator().count_params()
          == _srgan_param_count(16, 64, 0, 2))


def test_save_and_load_round_trip(tmp_path):
  model = generators.build_super_generator(scale=2, num_res_blocks=1, filters=8)
  x = _images((1, 8, 8, 3), seed=3)
  expected = model(x).numpy()
  path = tmp_path / "g.keras"
  model.save(path)
  loaded = keras.models.load_model(path)
  assert any(isinstance(l, generators.PixelShuffle) for l in loaded.layers)
  np.testing.assert_allclose(loaded(x), expected, atol=1e-6)
  # Still fully convolutional after reloading.
  assert loaded(_images((1, 4, 6, 3))).shape == (1, 8, 12, 3)


def test_mixed_precision_output_is_float32():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    for model in (generators.build_sub_generator(2, num_res_blocks=1, filters=8),
                  generators.build_super_generator(2, num_res_blocks=1, filters=8)):
      assert _layer(model, "head_conv").compute_dtype == "float16"
      out = model(_images((1, 8, 8, 3)))
      assert out.dtype == tf.float32
      assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_gradients_reach_every_trainable_weight():
  model = generators.build_sub_generator(scale=2, num_res_blocks=2, filters=8)
  x = _images((2, 8, 8, 3))
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(tf.square(model(x, training=True) - 0.3))
  grads = tape.gradient(loss, model.trainable_weights)
  assert all(g is not None for g in grads)
  assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_pixel_shuffle_layer():
  layer = generators.PixelShuffle(2)
  x = np.arange(16, dtype="float32").reshape(1, 1, 1, 16)
  out = layer(x)
  assert out.shape == (1, 2, 2, 4)
  np.testing.assert_array_equal(out[0, 0, 1], [4, 5, 6, 7])
  assert generators.PixelShuffle.from_config(layer.get_config()).block_size == 2
  with pytest.raises(ValueError):
    generators.PixelShuffle(1)


@pytest.mark.parametrize("build,scale,in_size,out_size", [
    (generators.build_sub_generator, 2, 16, 8),
    (generators.build_super_generator, 4, 8, 32)])
def test_image_skip_starts_as_plain_resizing_and_round_trips(tmp_path, build, scale,
                                                             in_size, out_size):
  model = build(scale=scale, num_res_blocks=1, filters=8, image_skip=True)
  images = tf.random.uniform((2, in_size, in_size, 3), seed=7)
  expected = tf.clip_by_value(
      tf.image.resize(images * 2 - 1, (out_size, out_size), "bicubic", antialias=True),
      -1, 1) * 0.5 + 0.5
  np.testing.assert_allclose(model(images), expected, atol=1e-5)
  model.save(tmp_path / "g.keras")
  loaded = keras.models.load_model(tmp_path / "g.keras")
  np.testing.assert_allclose(loaded(images), model(images), atol=1e-6)


def test_two_generators_have_distinct_variable_names():
  sub = generators.build_sub_generator(scale=2, num_res_blocks=1, filters=8)
  sup = generators.build_super_generator(scale=2, num_res_blocks=1, filters=8)
  sub_paths = {v.path for v in sub.weights}
  assert sub_paths and not sub_paths & {v.path for v in sup.weights}
