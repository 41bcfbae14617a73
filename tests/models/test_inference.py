"""Tests of the inference copies: bf16/fp16 compute, matrix resizes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.models import generators
from cdgan_tf.models import inference
from cdgan_tf.models.layers import ResizeByFactor

# Stated tolerances (max abs pixel difference in [0, 1], random tiny generators):
BF16_ATOL = 2e-2   # bfloat16 keeps 8 bits of mantissa: ~4e-3 relative per op.
FP16_ATOL = 3e-3   # float16 keeps 11 bits.


def _images(shape, seed=0):
  return tf.constant(np.random.default_rng(seed).random(shape).astype("float32"))


def _tiny(role, image_skip=True):
  keras.utils.set_random_seed(0)
  build = (generators.build_sub_generator if role == "sub"
           else generators.build_super_generator)
  model = build(scale=2, num_res_blocks=2, filters=16, image_skip=image_skip)
  # The image-skip tail conv starts at zero (the output is then the plain resize): give
  # it weights, so the whole network reaches the output.
  tail = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)][-1]
  tail.kernel.assign(np.random.default_rng(1).normal(0, 0.02, tail.kernel.shape)
                     .astype("float32"))
  return model


@pytest.mark.parametrize("in_size,out_size", [(32, 16), (16, 32), (24, 24), (9, 31)])
def test_matrix_resize_equals_the_one_resize(in_size, out_size):
  images = _images((2, in_size, in_size + 3, 3))
  out = inference.matrix_resize(images, (out_size, out_size + 1))
  np.testing.assert_allclose(out, image_ops.resize(images, (out_size, out_size + 1)),
                             atol=1e-5)


def test_matrix_resize_needs_a_static_size():
  fn = tf.function(lambda x: inference.matrix_resize(x, 8),
                   input_signature=[tf.TensorSpec([1, None, None, 3])])
  with pytest.raises(ValueError, match="known height and width"):
    fn.get_concrete_function()


@pytest.mark.parametrize("role,side", [("sub", 32), ("super", 16)])
def test_matrix_resize_copy_equals_the_generator(role, side):
  model = _tiny(role)
  copy = inference.inference_copy(model, matrix_resizes=True)
  assert any(isinstance(l, inference.MatrixResizeByFactor) for l in copy.layers)
  assert not any(type(l) is ResizeByFactor for l in copy.layers)  # pylint: disable=unidiomatic-typecheck
  images = _images((2, side, side, 3), seed=1)
  np.testing.assert_allclose(copy(images, training=False), model(images, training=False),
                             atol=1e-5)


@pytest.mark.parametrize("dtype,atol", [("bfloat16", BF16_ATOL), ("float16", FP16_ATOL)])
@pytest.mark.parametrize("role,side", [("sub", 32), ("super", 16)])
def test_low_precision_copy_is_close_to_float32(role, side, dtype, atol):
  model = _tiny(role)
  copy = inference.inference_copy(model, dtype)
  assert copy.get_layer(model.layers[1].name).compute_dtype == dtype
  images = _images((2, side, side, 3), seed=2)
  ref = model(images, training=False)
  out = copy(images, training=False)
  assert out.dtype == tf.float32 and out.shape == ref.shape
  diff = float(tf.reduce_max(tf.abs(out - ref)))
  assert 0.0 < diff < atol  # Really computed in low precision, and close.
  assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
  # Same weights, and the original untouched.
  assert model.layers[1].compute_dtype == "float32"


def test_float32_copy_is_the_model_itself_and_bad_dtype_refused():
  model = _tiny("super", image_skip=False)
  assert inference.inference_copy(model) is model
  assert inference.inference_copy(model, matrix_resizes=True) is model  # No resize layer.
  with pytest.raises(ValueError, match="compute_dtype"):
    inference.inference_copy(model, "int8")
