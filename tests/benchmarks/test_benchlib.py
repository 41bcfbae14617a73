"""benchmarks/benchlib.py: the FLOP counter on layers counted by hand, the op profile."""

import sys

import numpy as np
import tensorflow as tf

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import benchlib  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

KERNEL = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 4, 8)), tf.float32)


def _conv(x):
  return tf.nn.conv2d(x, KERNEL, strides=1, padding="SAME")


def test_conv_and_matmul_counts_by_hand():
  # SAME 3x3 conv, 4 -> 8 channels, on 1 x 8 x 8: 8 * 8 * 8 outputs, each 3 * 3 * 4
  # multiply-adds (the profiler counts the padded taps too), 2 FLOPs each.
  assert benchlib.function_flops(_conv, [1, 8, 8, 4]) == 2 * 8 * 8 * 8 * 3 * 3 * 4
  # Batch 2 doubles it.
  assert benchlib.function_flops(_conv, [2, 8, 8, 4]) == 2 * 2 * 8 * 8 * 8 * 3 * 3 * 4
  weights = tf.constant(np.ones((3, 5)), tf.float32)
  # [2, 3] x [3, 5]: 2 * 5 outputs of 3 multiply-adds.
  assert benchlib.function_flops(lambda x: tf.matmul(x, weights), [2, 3]) == 2 * 2 * 3 * 5


def test_input_gradient_of_a_conv_counts_the_transposed_conv():
  """The input gradient of a conv is its transpose (Conv2DBackpropInput): the same
  multiply-adds. Only what the outputs need is counted: returning the gradient alone
  prunes the forward conv (sum's gradient is a fill, not the conv's output)."""
  def gradient_only(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = tf.reduce_sum(_conv(x))
    return tape.gradient(y, x)

  def value_and_gradient(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = tf.reduce_sum(_conv(x))
    return y, tape.gradient(y, x)
  conv = 2 * 8 * 8 * 8 * 3 * 3 * 4
  assert benchlib.function_flops(gradient_only, [1, 8, 8, 4]) == conv
  flops = benchlib.function_flops(value_and_gradient, [1, 8, 8, 4])
  # The forward conv, its transpose, and reduce_sum's 8 * 8 * 8 - 1 adds.
  assert flops == 2 * conv + 8 * 8 * 8 - 1, flops


def test_op_time_profile_names_the_ops_that_run():
  rows = benchlib.op_time_profile(_conv, [2, 16, 16, 4], top=3, runs=1)
  assert rows and len(rows) <= 3
  assert any("Conv2D" in row["op"] for row in rows), rows
  assert all(0 <= row["share"] <= 1 for row in rows)
  assert [row["ms"] for row in rows] == sorted((row["ms"] for row in rows), reverse=True)
