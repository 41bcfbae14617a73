"""Randomized purification: a fresh random input transformation before every call.

Every strong purifier against adaptive attacks is randomized (DiffPure's noise; NRP's
noise mode; Xie et al. 2018's random resize and pad), and such a defense only counts
when attacked under expectation over transformation (EOT, `attacks.eot`). This module
puts a random transformation in front of any purifier (CD-GAN, its ablations, the
baselines):

  images [N, H, W, 3] in [0, 1]
    -> + sigma * N(0, 1) per pixel, clipped to [0, 1]          (noise > 0)
    -> random resize to [S, S * 330/299) per side, zero-pad at a random offset to
       ceil(S * 330/299), resize back to S = (H, W)            (random_resize)
    -> the purifier

Seeding: draw i of a purifier with seed s uses the stateless seed [s, i]; the call
counter i is a tf.Variable, so every call (eager, inside a tf.function or a
SavedModel signature) draws new randomness, and two purifiers with the same seed draw
the same sequence. `purify(images, seed=...)` with an explicit int64 [2] seed gives the
same output for the same seed. A randomized purifier is not batch-invariant by design:
a batch's draw covers the whole batch.
"""

from __future__ import annotations

from typing import List, Optional

import tensorflow as tf

from cdgan_tf.attacks import gradient
from cdgan_tf.common import errors
from cdgan_tf.defenses import base


def describe(noise: float, random_resize: bool) -> str:
  """The transformation in words, for reports: 'noise 0.03 + random resize-pad'."""
  parts = [f"Gaussian noise sigma {noise:g}"] if noise > 0 else []
  parts += ["random resize-and-pad (x1-1.10)"] if random_resize else []
  return " + ".join(parts) or "none"


def random_transform(images: tf.Tensor, seed: tf.Tensor, noise: float = 0.0,
                     random_resize: bool = False) -> tf.Tensor:
  """The random input transformation of one draw (see the module docstring).

  Args:
    images: float32 [N, H, W, 3] in [0, 1].
    seed: int64 [2] stateless seed of this draw.
    noise: Standard deviation of the Gaussian noise on the [0, 1] scale (0: none).
    random_resize: Apply the random resize-and-pad.

  Returns:
    float32 [N, H, W, 3] in [0, 1], differentiable with respect to `images` (the
    noise is additive; zero gradient only where the clip to [0, 1] is active).
  """
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
  x = images
  if noise > 0:
    x = tf.clip_by_value(x + noise * tf.random.stateless_normal(tf.shape(x), seeds[0]),
                         0.0, 1.0)
  if random_resize:
    x = gradient.input_diversity(x, 1.0, seeds[1])
  return x


class RandomizedPurifier(tf.Module, base.Purifier):
  """A purifier with a random input transformation drawn anew at every call.

  Args:
    purifier: Any `Purifier` (a CdganPurifier stays exportable: `serving.modules`).
    noise: Gaussian noise sigma on the [0, 1] scale (>= 0).
    random_resize: Random resize-and-pad before the purifier.
    seed: Base seed; draw i uses [seed, i].
    name: Registry name (default: "<purifier name>_rand").

  Raises:
    UsageError: a negative or non-finite noise, or no transformation at all.
  """

  def __init__(self, purifier: base.Purifier, noise: float = 0.0,
               random_resize: bool = False, seed: int = 0, name: Optional[str] = None):
    noise = float(noise)
    if not noise >= 0 or noise == float("inf"):
      raise errors.UsageError(f"purifier noise={noise} must be a finite number >= 0")
    if noise == 0 and not random_resize:
      raise errors.UsageError("a randomized purifier needs noise > 0 or random_resize")
    super().__init__(name="randomized_purifier")
    self.purifier = purifier
    self.noise = noise
    self.random_resize = bool(random_resize)
    self.differentiable = bool(purifier.differentiable)
    self.base_seed = tf.Variable(int(seed), dtype=tf.int64, trainable=False, name="seed")
    self.calls = tf.Variable(0, dtype=tf.int64, trainable=False, name="calls")
    self._registry_name = name or f"{purifier.name}_rand"
    for attribute in ("image_size", "scale"):  # CD-GAN's geometry, when it has one.
      if hasattr(purifier, attribute):
        setattr(self, attribute, getattr(purifier, attribute))

  @property
  def name(self) -> str:  # pylint: disable=invalid-overridden-method
    return getattr(self, "_registry_name", None) or super().name

  def next_seed(self) -> tf.Tensor:
    """int64 [2]: the seed of the next draw (advances the call counter)."""
    count = self.calls.assign_add(1)
    return tf.stack([tf.identity(self.base_seed), tf.identity(count)])

  def transform(self, images, seed=None) -> tf.Tensor:
    """The random transformation alone (a new draw unless `seed` is given)."""
    images = base.check_images(images, self.name)
    return random_transform(images, self.next_seed() if seed is None else seed,
                            self.noise, self.random_resize)

  def __call__(self, images, seed=None) -> tf.Tensor:
    """float32 [N, H, W, 3] in [0, 1] -> the purifier's output for one random draw."""
    return self.purifier(self.transform(images, seed))

  def stages(self, images) -> List[base.Stage]:
    transformed = self.transform(images)
    return [("randomized input", transformed)] + self.purifier.stages(transformed)

  def describe(self) -> str:
    return describe(self.noise, self.random_resize)


def randomize(defenses: dict, names, noise: float = 0.0, random_resize: bool = False,
              seed: int = 0) -> dict:
  """The defenses with a randomized copy "<name>_rand" after each one in `names`.

  Args:
    defenses: name -> Purifier, in order.
    names: Which of them get a randomized copy (each must be in `defenses`).
    noise, random_resize, seed: As in `RandomizedPurifier`; each copy gets its own
      seed (seed + its position), so no two copies draw the same noise.

  Raises:
    UsageError: a name not among the defenses.
  """
  unknown = [n for n in names if n not in defenses]
  if unknown:
    raise errors.UsageError(f"--randomize names {', '.join(unknown)}, not in --defenses "
                     f"({', '.join(defenses) or 'none'})")
  result = {}
  for i, (name, purifier) in enumerate(defenses.items()):
    result[name] = purifier
    if name in names:
      copy = RandomizedPurifier(purifier, noise, random_resize, seed=seed + i)
      result[copy.name] = copy
  return result


def is_randomized(purifier) -> bool:
  return isinstance(purifier, RandomizedPurifier)
