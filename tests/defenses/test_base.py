"""Tests for the purifier interface helpers in cdgan_tf.defenses.base."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.defenses import base


def _images(height, width, seed=0):
  rng = np.random.default_rng(seed)
  return tf.constant(rng.uniform(0.0, 1.0, (2, height, width, 3)), tf.float32)


def _to_16():
  return base.FunctionPurifier(lambda x: image_ops.resize(x, 16), "down16",
                               differentiable=True)


@pytest.mark.parametrize("height,width", [(24, 24), (30, 20)])
def test_keep_input_size_resizes_back_to_each_input(height, width):
  images = _images(height, width)
  purified = base.keep_input_size(_to_16())(images)
  assert purified.shape == (2, height, width, 3)
  # The purifier's output, then the one resize back: a hand composition.
  expected = image_ops.resize(image_ops.resize(images, 16), (height, width))
  np.testing.assert_allclose(purified.numpy(), expected.numpy(), atol=1e-6)


def test_keep_input_size_in_a_function_with_unknown_sizes():
  wrapped = base.keep_input_size(_to_16())
  fn = tf.function(wrapped, input_signature=[tf.TensorSpec([None, None, None, 3])])
  for height, width in [(24, 24), (30, 20)]:
    out = fn(_images(height, width, seed=1))
    assert out.shape == (2, height, width, 3)
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0


def test_keep_input_size_keeps_name_and_differentiability():
  jpeg_like = base.FunctionPurifier(tf.identity, "jpeg75", differentiable=False)
  assert base.keep_input_size(jpeg_like).name == "jpeg75"
  assert not base.keep_input_size(jpeg_like).differentiable
  assert base.keep_input_size(_to_16()).differentiable


def _per_image(x):
  """A batch-size-invariant fn: each image's sum (and a record of the call's size)."""
  _per_image.calls.append(int(x.shape[0]) if x.shape[0] is not None else None)
  return tf.reduce_sum(x, axis=[1, 2, 3]) * 2.0


def test_in_batches_eager_cuts_in_order_and_equals_one_call():
  images = tf.reshape(tf.range(11 * 2 * 2 * 1, dtype=tf.float32), [11, 2, 2, 1])
  _per_image.calls = []
  out = base.in_batches(_per_image, images, 4)
  assert _per_image.calls == [4, 4, 3]
  # By hand: image i holds 4i, 4i+1, 4i+2, 4i+3, sum 16i + 6, times 2.
  np.testing.assert_array_equal(out.numpy(), [2.0 * (16 * i + 6) for i in range(11)])
  _per_image.calls = []
  base.in_batches(_per_image, images[:3], 4)
  base.in_batches(_per_image, images[:6], 4)
  assert _per_image.calls == [3, 4, 2]


@pytest.mark.parametrize("count", [0, 3, 8, 9, 17])
def test_in_batches_in_a_function_with_a_dynamic_batch(count):
  fn = tf.function(lambda x: base.in_batches(lambda y: tf.reduce_sum(y, axis=[1, 2, 3]),
                                             x, 8),
                   input_signature=[tf.TensorSpec([None, 2, 2, 1], tf.float32)])
  images = tf.random.stateless_uniform([count, 2, 2, 1], [count, 1])
  np.testing.assert_allclose(fn(images).numpy(), tf.reduce_sum(images, [1, 2, 3]).numpy(),
                             rtol=1e-6)


def test_cpu_batch_size_only_without_accelerators():
  cpu = tf.config.LogicalDevice("/device:CPU:0", "CPU")
  gpu = tf.config.LogicalDevice("/device:GPU:0", "GPU")
  assert base.cpu_batch_size([cpu]) == base.CPU_BATCH_SIZE
  assert base.cpu_batch_size([cpu, gpu]) == 0
  with pytest.raises(ValueError, match="batch_size"):
    base.in_batches(_per_image, tf.zeros([2, 1, 1, 1]), 0)


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [0, 1, 4])
def test_purified_pixels_do_not_depend_on_the_batch(chunk):
  """The shipped ImageNet CD-GAN: a batch of 6 vs the same images one by one / by 3.

  A per-shape tf.function (reduce_retracing) differs by ~2e-7 here and runs different
  graphs; the shape-generic trace of `batch_invariant` runs one graph. Run image by
  image inside it (chunk 1) the pixels are equal bit for bit; on the whole batch or in
  chunks of 4 the kernels' blocking may follow the batch size on some CPUs (1.8e-7 on
  an AMD EPYC, 0 on another machine), so those are held to a bound of a few float32
  steps, far below one uint8 level (1/255).
  """
  from cdgan_tf.defenses import cdgan  # pylint: disable=import-outside-toplevel
  root = pathlib.Path(__file__).resolve().parents[2] / "weights" / "imagenet" / "cdgan"
  if not (root / "sub").exists():
    pytest.skip("shipped ImageNet generators absent")
  purifier = cdgan.CdganPurifier.from_files(str(root / "sub"), str(root / "super"))
  images = tf.random.stateless_uniform([6, 96, 96, 3], seed=[1, 2])
  purify = base.batch_invariant(purifier, chunk)  # chunk 4: 6 images go 4 + 2
  together = purify(images).numpy()
  for size in (1, 3):
    parts = np.concatenate([purify(images[i:i + size]).numpy() for i in range(0, 6, size)])
    if chunk == 1:
      np.testing.assert_array_equal(parts, together)
    else:
      np.testing.assert_allclose(parts, together, rtol=0, atol=5e-7)
