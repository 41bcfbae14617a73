"""Tests of the cheap baseline purifiers."""

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.defenses import baselines

NAMES = ("identity", "resize", "jpeg75", "bits4", "median3", "median5")


def _random(shape=(3, 16, 12, 3), seed=0):
  return np.random.default_rng(seed).random(shape).astype("float32")


def _smooth(size=16):
  y, x = np.mgrid[0:size, 0:size] / (size - 1)
  image = np.stack([0.5 + 0.4 * np.sin(2 * y), 0.5 + 0.4 * np.cos(3 * x), (x + y) / 2], -1)
  return image[None].astype("float32")


@pytest.mark.parametrize("name", NAMES)
def test_shape_range_and_graph_mode(name):
  images = _random()
  purifier = baselines.make_baseline(name, image_size=32, scale=4)
  assert purifier.name == name
  out = purifier(images)
  assert out.shape == images.shape and out.dtype == tf.float32
  assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
  graph = tf.function(purifier, input_signature=[tf.TensorSpec([None, None, None, 3])])
  np.testing.assert_allclose(graph(images), out, atol=1e-6)


def test_differentiable_flags_match_gradients():
  images = tf.constant(_random())
  for name in NAMES:
    purifier = baselines.make_baseline(name, image_size=32, scale=4)
    with tf.GradientTape() as tape:
      tape.watch(images)
      total = tf.reduce_sum(purifier(images) * tf.range(12, dtype=tf.float32)[:, None])
    grad = tape.gradient(total, images)
    useful = grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0
    assert useful == purifier.differentiable, name


def test_bits4_has_exactly_16_levels():
  ramp = tf.reshape(tf.linspace(0.0, 1.0, 64 * 64 * 3), (1, 64, 64, 3))
  out = baselines.make_baseline("bits4", 16, 4)(ramp).numpy()
  levels = np.unique(out)
  assert len(levels) == 16
  np.testing.assert_allclose(levels, np.arange(16) / 15, atol=1e-6)
  assert np.max(np.abs(out - ramp.numpy())) <= 0.5 / 15 + 1e-6


def test_median3_removes_isolated_salt_pixel():
  image = np.full((1, 9, 9, 3), 0.25, np.float32)
  image[0, 4, 4, 1] = 1.0  # Salt in the green channel only.
  image[0, 0, 0, :] = 1.0  # Salt in a corner: reflect padding must not keep it.
  out = baselines.make_baseline("median3", 16, 4)(image).numpy()
  np.testing.assert_allclose(out, 0.25)


def test_median_matches_numpy_reference():
  images = _random((2, 7, 6, 3))
  for k in (3, 5):
    pad = k // 2
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    expected = np.zeros_like(images)
    for i in range(images.shape[1]):
      for j in range(images.shape[2]):
        expected[:, i, j] = np.median(padded[:, i:i + k, j:j + k], axis=(1, 2))
    np.testing.assert_allclose(baselines.median(k)(images), expected, atol=1e-7)
  np.testing.assert_array_equal(baselines.median(1)(images), images)


def test_jpeg_differs_from_identity_but_stays_close():
  images = image_ops.resize(_smooth(32), 32)
  out = baselines.make_baseline("jpeg75", 16, 4)(images)
  assert float(tf.reduce_max(tf.abs(out - images))) > 1e-3
  assert float(image_ops.psnr(out, images)[0]) > 30.0
  rough = baselines.make_baseline("jpeg10", 16, 4)(images)
  assert float(image_ops.psnr(rough, images)[0]) < float(image_ops.psnr(out, images)[0])


def test_resize_scale_one_is_identity_and_scale_four_blurs():
  image = _smooth(16)
  same = baselines.make_baseline("resize", image_size=16, scale=1)(image)
  np.testing.assert_array_equal(same, image)
  round_trip = baselines.make_baseline("resize", image_size=64, scale=1)(image)
  assert float(image_ops.psnr(round_trip, image)[0]) > 50.0
  blurred = baselines.make_baseline("resize", image_size=16, scale=4)(image)
  assert 25.0 < float(image_ops.psnr(blurred, image)[0]) < 50.0
  # Noise has no low-frequency content to keep: down/up-sizing removes most of it.
  noise = _random((1, 16, 16, 3))
  smoothed = baselines.make_baseline("resize", image_size=16, scale=4)(noise)
  assert float(tf.math.reduce_std(smoothed)) < 0.5 * float(tf.math.reduce_std(noise))


def test_resize_follows_cd_gan_geometry():
  images = _random((2, 20, 30, 3))
  out = baselines.resize(image_size=32, scale=4)(images)
  expected = image_ops.resize(image_ops.resize(image_ops.resize(
      image_ops.resize(images, 32), 8), 32), (20, 30))
  np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("name", ["jpeg", "bits0", "bits9", "median4", "median0",
                                  "jpeg101", "blur3", "", "resize2"])
def test_bad_names_raise(name):
  with pytest.raises(ValueError, match="baseline"):
    baselines.make_baseline(name, 16, 4)


def test_unknown_name_lists_valid_forms():
  with pytest.raises(ValueError, match=r"unknown baseline 'blur3'.*jpeg<q>.*median<k>"):
    baselines.make_baseline("blur3", 16, 4)


def test_resize_rejects_indivisible_size_and_bad_input():
  with pytest.raises(ValueError, match="divisible"):
    baselines.make_baseline("resize", image_size=30, scale=4)
  with pytest.raises(ValueError, match="rank|\\[N, H, W, C\\]"):
    baselines.make_baseline("bits4", 16, 4)(np.zeros((8, 8, 3), np.float32))
  with pytest.raises(ValueError, match="too small"):
    baselines.make_baseline("median5", 16, 4)(np.zeros((1, 2, 2, 3), np.float32))


def test_registry_refuses_an_unknown_name_before_loading_any_generator(tmp_path):
  from cdgan_tf.defenses import registry  # pylint: disable=import-outside-toplevel

  missing = str(tmp_path / "no_such_generator")
  with pytest.raises(ValueError, match=r"unknown defense 'blur3'; valid: cdgan, sub_only, "
                                       r"super_only, identity, resize, jpeg<q>"):
    registry.build_defenses(["cdgan", "blur3"], sub_model=missing, super_model=missing)
  assert baselines.is_baseline_name("jpeg75") and baselines.is_baseline_name("Resize")
  assert not baselines.is_baseline_name("blur3") and not baselines.is_baseline_name("cdgan")
