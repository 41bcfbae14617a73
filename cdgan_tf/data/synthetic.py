"""Synthetic (adversarial, clean) pairs and their records, for tests and benchmarks.

The one place that makes made-up training data (no flags):

  noise_pairs   clean: uniform random pixels; adversarial: clean + N(0, 8) grey levels
                (the tests' and the throughput benchmarks' data: content is irrelevant)
  sign_pairs    clean: smooth images (bicubic-upsampled 8x8 noise); adversarial: clean
                + a +-8/255 random sign pattern, as an L-inf attack leaves, so a
                purifier has something to remove and the attacked input's PSNR is
                known (about 30.1 dB)
  write_records pairs -> `<split>-NNNNN-of-MMMMM.tfrecord` shards in the builder's
                format (`data.features`); returns their glob
"""

from __future__ import annotations

import os
from typing import Tuple

import numpy as np
import tensorflow as tf

from cdgan_tf.data import features

EPSILON = 8 / 255
Pairs = Tuple[np.ndarray, np.ndarray]


def noise_pairs(size: int, count: int, seed: int) -> Pairs:
  """(adversarial, clean) uint8 [count, size, size, 3]: random clean pixels and the
  clean image plus Gaussian noise of standard deviation 8 grey levels (clipped)."""
  rng = np.random.default_rng(seed)
  adversarial, clean = [], []
  for _ in range(count):  # Example by example: a longer run extends a shorter one.
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    noise = rng.normal(0, 8, image.shape)
    clean.append(image)
    adversarial.append(np.clip(image + noise, 0, 255).astype(np.uint8))
  return np.stack(adversarial), np.stack(clean)


def sign_pairs(size: int, count: int, seed: int) -> Pairs:
  """(adversarial, clean) uint8 [count, size, size, 3]: smooth clean images (bicubic
  upsampled 8x8 noise) and the clean image plus a +-8/255 random sign pattern."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 1, (count, 8, 8, 3)).astype(np.float32)
  clean = tf.clip_by_value(tf.image.resize(coarse, (size, size), "bicubic"), 0, 1).numpy()
  signs = rng.choice([-1.0, 1.0], clean.shape).astype(np.float32)
  adversarial = np.clip(clean + EPSILON * signs, 0, 1)
  to_uint8 = lambda x: np.round(x * 255).astype(np.uint8)  # noqa: E731
  return to_uint8(adversarial), to_uint8(clean)


def write_records(directory: str, split: str, pairs: Pairs, shards: int = 1) -> str:
  """Writes pairs as `shards` PNG record files of `split`; returns their glob.

  Example i has label i % 10 and file name "<split>_<i>"; the examples are dealt to the
  shards in order (shard k holds a contiguous block).

  Args:
    directory: Existing output folder.
    split: "train", "val", ...
    pairs: (adversarial, clean) uint8 [N, H, W, 3] each (`noise_pairs`, `sign_pairs`).
    shards: Number of files; N // shards examples each (the rest is dropped).
  """
  adversarial, clean = pairs
  per_shard = len(clean) // shards
  for shard in range(shards):
    path = os.path.join(directory, f"{split}-{shard:05d}-of-{shards:05d}.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
      for i in range(shard * per_shard, (shard + 1) * per_shard):
        height, width = clean[i].shape[:2]
        writer.write(features.make_example(
            tf.io.encode_png(adversarial[i]).numpy(), (height, width),
            tf.io.encode_png(clean[i]).numpy(), (height, width), label=i % 10,
            file_name=f"{split}_{i}").SerializeToString())
  return os.path.join(directory, f"{split}-*")
