"""Synthetic (adversarial, clean) pairs for benchmarks and their tests (no flags).

Clean images are smooth (bicubic-upsampled 8x8 noise); the adversarial side adds a
+-8/255 random sign pattern, so a purifier has something to remove and the PSNR of the
attacked input is known (about 30.1 dB).
"""

import numpy as np
import tensorflow as tf

from cdgan_tf.data import features

EPSILON = 8 / 255


def synthetic_pairs(size: int, count: int, seed: int):
  """(adversarial, clean) uint8 [count, size, size, 3]: smooth clean images (bicubic
  upsampled 8x8 noise) and the clean image plus a +-8/255 random sign pattern."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 1, (count, 8, 8, 3)).astype(np.float32)
  clean = tf.clip_by_value(tf.image.resize(coarse, (size, size), "bicubic"), 0, 1).numpy()
  signs = rng.choice([-1.0, 1.0], clean.shape).astype(np.float32)
  adversarial = np.clip(clean + EPSILON * signs, 0, 1)
  to_uint8 = lambda x: np.round(x * 255).astype(np.uint8)  # noqa: E731
  return to_uint8(adversarial), to_uint8(clean)


def write_records(path: str, size: int, count: int, seed: int) -> str:
  """Writes synthetic pairs in the builder's record format; returns the path."""
  adversarial, clean = synthetic_pairs(size, count, seed)
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(count):
      writer.write(features.make_example(
          tf.io.encode_png(adversarial[i]).numpy(), (size, size),
          tf.io.encode_png(clean[i]).numpy(), (size, size), i % 10,
          f"s{seed}_{i}").SerializeToString())
  return path
