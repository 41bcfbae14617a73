"""Tests of cdgan_tf.classifiers.tflite_ops: the fused activation-and-clamp."""

import types

import numpy as np
import tensorflow as tf

from cdgan_tf.classifiers import tflite_ops
from cdgan_tf.classifiers.tflite_ops import OpContext, TensorInfo

SCALE = 0.023528477177023888  # MobileNet's uint8 RELU6 outputs: [0, 255 * SCALE].
HIGH = 255 * SCALE  # 5.99976...


def _context(activation: int, scale=SCALE, fake_quant=False) -> OpContext:
  out = TensorInfo(0, "out", (1, 4), np.dtype(np.uint8), np.array([scale], np.float32),
                   np.array([0], np.int64))
  return OpContext("CONV_2D", types.SimpleNamespace(fusedActivationFunction=activation),
                   [], [out], None, "test", fake_quant=fake_quant)


def _value_and_grad(fn, x):
  x = tf.constant(x, tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = fn(x)
  return y.numpy(), tape.gradient(y, x).numpy()


X = np.array([-2.0, -1e-3, 0.5, 3.0, HIGH - 1e-3, HIGH + 1e-4, 5.9999, 6.5, 9.0], np.float32)
CLIPPED = np.clip(X, 0.0, np.float32(HIGH))
INSIDE = ((X > 0) & (X < HIGH)).astype(np.float32)  # Hand-made clamp derivative.


def test_relu6_merged_with_clamp_equals_clip_and_its_gradient():
  ctx = _context(3)
  act = ctx.activation()
  assert ctx.saturated and ctx.weight_scale() == 1.0
  y, g = _value_and_grad(act, X)
  np.testing.assert_allclose(y, CLIPPED, rtol=3e-7, atol=1e-7)
  np.testing.assert_allclose(g, INSIDE, rtol=3e-7)
  # Without merging, saturate(relu6) computes the same clamp (the reference).
  y_ref = tflite_ops.saturate(tf.nn.relu6(X), ctx.outputs[0]).numpy()
  np.testing.assert_allclose(y, y_ref, rtol=3e-7, atol=1e-7)


def test_linear_callers_carry_the_scale_in_their_weights():
  ctx = _context(3)
  act = ctx.activation(linear=True)
  assert ctx.saturated
  np.testing.assert_allclose(ctx.weight_scale(), 6.0 / HIGH, rtol=1e-7)
  # The caller computes act(w * scale . x): here w . x = X.
  y, g = _value_and_grad(lambda x: act(x * ctx.weight_scale()), X)
  np.testing.assert_allclose(y, CLIPPED, rtol=3e-7, atol=1e-7)
  np.testing.assert_allclose(g, INSIDE, rtol=3e-7)


def test_no_merge_with_fake_quant_or_a_range_above_six():
  ctx = _context(3, fake_quant=True)
  assert ctx.activation() is tf.nn.relu6 and not ctx.saturated
  ctx = _context(1, scale=8.0 / 255)  # RELU into [0, 8]: the clamp at 8 stays.
  assert ctx.activation() is tf.nn.relu and not ctx.saturated
  ctx = _context(3, scale=8.0 / 255)  # RELU6 into [0, 8]: relu6 alone is the clamp.
  assert ctx.activation() is tf.nn.relu6 and ctx.saturated
