"""Label-free random perturbations in an L-inf ball: uniform and Gaussian noise.

The "noise" members of an attack mix (HGD trained on such a mix). No classifier, no
label: the perturbation is drawn with stateless random ops, so the same (images, eps,
seed) give the same result in any run.

  uniform:  x + U(-eps, eps) per pixel and channel;
  gaussian: x + clip(N(0, (eps / 2)^2), -eps, eps) per pixel and channel (two sigmas
            inside the budget; about 4.6 % of the draws are clipped to +-eps).

Both are clipped to [0, 1] afterwards, which only shrinks |x_adv - x|, so
max |x_adv - x| <= eps holds exactly.
"""

from __future__ import annotations

import tensorflow as tf

from cdgan_tf.attacks import draws
from cdgan_tf.common import errors

NOISES = ("uniform", "gaussian")
GAUSSIAN_SIGMA_PER_EPS = 0.5


def noise(images, eps: float, kind: str = "uniform", seed: int = 0) -> tf.Tensor:
  """Adds random noise bounded by eps in L-inf.

  Args:
    images: float32 [N, H, W, C] in [0, 1].
    eps: L-inf budget in [0, 1].
    kind: "uniform" or "gaussian" (see the module docstring).
    seed: Seed of the stateless draw: an int, or int [N], one per image (then an
      image's noise does not depend on its batch mates; `draws`).

  Returns:
    float32 [N, H, W, C] in [0, 1] with max |x_adv - images| <= eps.

  Raises:
    ValueError: unknown kind, or eps outside [0, 1].
  """
  if kind not in NOISES:
    raise errors.UsageError(f"noise kind={kind!r} is not one of {', '.join(NOISES)}")
  eps = float(eps)
  if not 0.0 <= eps <= 1.0:
    raise errors.UsageError(f"eps={eps} must be in [0, 1] (L-inf on the [0, 1] pixel scale)")
  images = tf.cast(tf.convert_to_tensor(images), tf.float32)
  shape = tf.shape(images)
  if kind == "uniform":
    delta = draws.uniform(shape, draws.seed_pairs(seed, 7919), -eps, eps)
  else:
    delta = draws.normal(shape, draws.seed_pairs(seed, 7919),
                         stddev=GAUSSIAN_SIGMA_PER_EPS * eps)
    delta = tf.clip_by_value(delta, -eps, eps)
  return tf.clip_by_value(images + delta, 0.0, 1.0)
