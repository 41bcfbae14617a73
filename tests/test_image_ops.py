"""Tests of the shared image operations."""

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import image_ops


def test_resize_shapes_and_range():
  rng = np.random.default_rng(0)
  images = rng.random((2, 32, 32, 3)).astype("float32")
  small = image_ops.resize(images, 8)
  assert small.shape == (2, 8, 8, 3)
  big = image_ops.resize(small, (32, 16))
  assert big.shape == (2, 32, 16, 3)
  assert float(tf.reduce_min(big)) >= 0.0 and float(tf.reduce_max(big)) <= 1.0


def test_resize_downscale_is_antialiased():
  # A 1-pixel checkerboard averages to grey when antialiased, not to black/white.
  board = (np.indices((32, 32)).sum(0) % 2).astype("float32")[None, :, :, None]
  small = image_ops.resize(np.repeat(board, 3, -1), 8).numpy()
  np.testing.assert_allclose(small, 0.5, atol=0.05)


def test_generator_range_round_trip():
  x = tf.constant([0.0, 0.25, 1.0])
  np.testing.assert_allclose(image_ops.to_generator_range(x), [-1.0, -0.5, 1.0])
  np.testing.assert_allclose(image_ops.from_generator_range(tf.constant([-2.0, 0.0, 1.0])),
                             [0.0, 0.5, 1.0])


def test_psnr_and_ssim_known_values():
  a = tf.zeros((1, 16, 16, 3))
  b = tf.fill((1, 16, 16, 3), 0.1)  # MSE 0.01 -> 20 dB
  np.testing.assert_allclose(image_ops.psnr(a, b), [20.0], atol=1e-3)
  # One pixel of one channel off by 1/255 in a 16x16x3 image: MSE (1/255)^2 / 768,
  # 10 log10(768 * 255^2) = 76.98 dB by hand, above the ceiling of 8-bit rounding.
  c = a + tf.one_hot(0, 16 * 16 * 3, on_value=1 / 255)[None].numpy().reshape(1, 16, 16, 3)
  # Identical images (the attack mix's clean pairs) score the ceiling, not +inf; so does
  # the 77 dB pair; a batch mean stays finite; 20 dB images are unchanged beside them.
  ceiling = 10 * np.log10(12 * 255.0**2)
  assert image_ops.PSNR_CEILING_DB == pytest.approx(58.92, abs=5e-3) == ceiling
  np.testing.assert_allclose(image_ops.psnr(tf.concat([a, b, c], 0), tf.concat([a, a, a], 0)),
                             [ceiling, 20.0, ceiling], atol=1e-3)
  np.testing.assert_allclose(image_ops.ssim(b, b), [1.0], atol=1e-5)
  assert float(image_ops.ssim(tf.random.uniform((1, 16, 16, 3), seed=1), b)[0]) < 0.5


def test_side_by_side():
  grid = image_ops.side_by_side(tf.zeros((2, 8, 8, 3)), tf.ones((2, 4, 4, 3)))
  assert grid.shape == (2, 8, 16, 3)
  np.testing.assert_allclose(grid[:, :, 8:], 1.0)


def test_decode_image_png_and_grayscale():
  gray = tf.io.encode_png(tf.constant([[[0], [255]]], tf.uint8))
  decoded = image_ops.decode_image(gray)
  assert decoded.shape == (1, 2, 3)
  np.testing.assert_allclose(decoded[0, 1], [1.0, 1.0, 1.0])


def test_decode_jpeg_matches_pil():
  import io
  from PIL import Image
  rng = np.random.default_rng(0)
  pixels = (rng.random((24, 24, 3)) * 255).astype(np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
  data = buffer.getvalue()
  expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
  decoded = image_ops.decode_image(tf.constant(data)).numpy()
  np.testing.assert_array_equal(np.round(decoded * 255).astype(np.uint8), expected)


def _keys_cubic(x, a=-0.5):
  """The Keys (1981) cubic convolution kernel, a = -0.5 (TF's and PIL's bicubic)."""
  x = abs(x)
  if x < 1:
    return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
  if x < 2:
    return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
  return 0.0


def _hand_resize_1d(row, out):
  """Antialiased bicubic by hand: the kernel stretched by the downscale factor, pixel
  centres at i + 0.5, weights renormalised at the borders, result clipped to [0, 1]."""
  n = len(row)
  step = n / out
  stretch = max(step, 1.0)
  result = []
  for j in range(out):
    centre = (j + 0.5) * step
    weights = np.array([_keys_cubic((i + 0.5 - centre) / stretch) for i in range(n)])
    result.append((weights * row).sum() / weights.sum())
  return np.clip(result, 0.0, 1.0)


ROW = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0, 0, 1, 1], np.float32)


@pytest.mark.parametrize("out,expected", [
    # Pinned values (16 -> 8 and 16 -> 4): the hand computation below gives the same.
    (8, [0.0, 0.06564, 0.93945, 0.98145, 0.51953, 0.23242, 0.09073, 0.92573]),
    (4, [0.09048, 0.88693, 0.37199, 0.46058]),
    (32, None)])
def test_resize_is_antialiased_bicubic_by_value(out, expected):
  """Pins the method and the antialiasing: bilinear, area, or bicubic without
  antialiasing all give other values (an earlier test only compared two resizes)."""
  image = np.tile(ROW[None, :, None], (1, 1, 3))[None]  # [1, 1, 16, 3]
  got = image_ops.resize(image, (1, out)).numpy()[0, 0, :, 0]
  np.testing.assert_allclose(got, _hand_resize_1d(ROW, out), atol=1e-5)
  if expected is not None:
    np.testing.assert_allclose(got, expected, atol=1e-5)
