"""The gradient attacks' random draws, from one seed per batch or one seed per image.

Every draw is stateless (`tf.random.stateless_*`), so the same seed gives the same
attack. A seed is either

  - a scalar int64: one stream for the whole batch (the random start is drawn for the
    batch tensor, and input diversity draws one transform per step for all images, as
    in Xie et al.'s code), so an image's perturbation depends on its batch mates; or
  - an int64 vector [N], one seed per image: each image's draws are those a batch of
    one with that scalar seed gets, so an image's perturbation does not depend on
    which images share its batch or where it sits in it (up to float round-off of
    batched kernels). Transfer sets and the generalization table use this
    (`image_seeds`: a hash of the run's seed and the image's key).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import tensorflow as tf

from cdgan_tf.common import errors

DIVERSITY_RATIO = 330.0 / 299.0  # Xie et al.: 299 px inputs resized up to 330 px.
# How a transfer set seeds its attacks: one seed per image (from its key; its result
# does not depend on its batch mates) or one per batch (from the batch's first key;
# transfer sets made before per-image seeds).
SEEDINGS = ("image", "batch")


def batch_seed(seed: int, first_key: str) -> int:
  """The attack seed of the batch starting at `first_key` (a non-negative int63)."""
  digest = hashlib.sha256(f"{seed}/{first_key}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") >> 1


def image_seeds(seed: int, keys: Sequence[str]) -> np.ndarray:
  """int64 [N]: each image's attack seed, `batch_seed(seed, key)` of its own key."""
  return np.array([batch_seed(seed, key) for key in keys], np.int64)


def step_seed(seed: tf.Tensor, step, salt: int) -> tf.Tensor:
  """The stateless seed of one draw: int64 [2] from a scalar seed, [N, 2] from [N]."""
  seed = tf.cast(seed, tf.int64)
  step = tf.broadcast_to(tf.cast(step, tf.int64), tf.shape(seed))
  return tf.stack([seed * 1000003 + salt, step], axis=-1)


def seed_pairs(seed, second: int) -> tf.Tensor:
  """(seed mod 2^63 - 1, second) as int64 [2] for an int seed, [N, 2] for N of them."""
  values = np.asarray(seed)
  if values.ndim > 1:
    raise errors.UsageError(f"seed of shape {list(values.shape)}: expected an int or one "
                            "per image")
  pairs = [[int(v) % (2**63 - 1), second] for v in values.reshape(-1)]
  return tf.constant(pairs[0] if values.ndim == 0 else pairs, tf.int64,
                     shape=[2] if values.ndim == 0 else [len(pairs), 2])


def _draw(sample, shape, pairs: tf.Tensor) -> tf.Tensor:
  """`sample(shape, pair)` once for the batch (pairs [2]) or per image (pairs [N, 2])."""
  if pairs.shape.rank == 1:
    return sample(shape, pairs)
  return tf.map_fn(lambda pair: sample(shape[1:], pair), pairs,
                   fn_output_signature=tf.float32)


def uniform(shape, pairs: tf.Tensor, minval=0.0, maxval=1.0) -> tf.Tensor:
  """float32 `shape` ([N, ...]) ~ U(minval, maxval) from seed `pairs` [2] or [N, 2]."""
  return _draw(lambda s, k: tf.random.stateless_uniform(s, k, minval, maxval), shape, pairs)


def normal(shape, pairs: tf.Tensor, stddev=1.0) -> tf.Tensor:
  """float32 `shape` ([N, ...]) ~ N(0, stddev^2) from seed `pairs` [2] or [N, 2]."""
  return _draw(lambda s, k: tf.random.stateless_normal(s, k, stddev=stddev), shape, pairs)


def input_diversity(images: tf.Tensor, probability, seed) -> tf.Tensor:
  """Xie et al. (2019) input diversity, resized back to the input size.

  With probability `probability` the image is resized (nearest neighbour) to a random
  side in [S, S * 330/299) per axis, zero-padded at a random offset to ceil(S * 330/299)
  (at least S + 1), and resized back (bilinear) to S; otherwise it is returned as is.
  With one seed [2] one transform is drawn and applied to the whole batch, as in the
  paper's code; with seeds [N, 2] each image draws its own.

  Args:
    images: float32 [N, H, W, C] in [0, 1].
    probability: Scalar in [0, 1].
    seed: int64 [2] (one transform) or [N, 2] (one per image) stateless seed.

  Returns:
    float32 [N, H, W, C], differentiable with respect to `images`.
  """
  seed = tf.convert_to_tensor(seed)
  if seed.shape.rank == 2:
    return tf.map_fn(lambda args: input_diversity(args[0][None], probability, args[1])[0],
                     (images, seed), fn_output_signature=tf.float32)
  shape = tf.shape(images)
  height, width = shape[1], shape[2]
  seeds = tf.random.experimental.stateless_split(seed, 4)

  def padded_side(side):
    big = tf.cast(tf.math.ceil(tf.cast(side, tf.float32) * DIVERSITY_RATIO), tf.int32)
    return tf.maximum(big, side + 1)

  def diverse():
    out_h, out_w = padded_side(height), padded_side(width)
    rnd_h = tf.random.stateless_uniform([], seeds[0], height, out_h, dtype=tf.int32)
    rnd_w = tf.random.stateless_uniform([], seeds[1], width, out_w, dtype=tf.int32)
    resized = tf.image.resize(images, tf.stack([rnd_h, rnd_w]), method="nearest")
    top = tf.random.stateless_uniform([], seeds[2], 0, out_h - rnd_h + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], seeds[3], 0, out_w - rnd_w + 1, dtype=tf.int32)
    padded = tf.pad(resized, [[0, 0], [top, out_h - rnd_h - top],
                              [left, out_w - rnd_w - left], [0, 0]])
    back = tf.image.resize(padded, tf.stack([height, width]), method="bilinear")
    back.set_shape(images.shape)
    return back

  draw = tf.random.stateless_uniform([], seed)
  return tf.cond(draw < probability, diverse, lambda: tf.identity(images))
