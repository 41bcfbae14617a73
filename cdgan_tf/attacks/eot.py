"""Expectation over transformation (EOT): the mean gradient over K random draws.

Athalye, Engstrom, Ilyas & Kwok, "Synthesizing robust adversarial examples", 2018;
Athalye et al., "Obfuscated gradients give a false sense of security", 2018. Against a
randomized defense (`defenses.randomized`) one gradient is that of one random draw; the
attacker who knows the defense follows the expected gradient instead, estimated as the
mean of K gradients, each through its own draw. `gradient.pgd(..., eot_samples=K)` uses
it for every step (white-box PGD through the randomized purifier, or BPDA whose forward
pass is randomized). With K = 1 it is the plain gradient, bit for bit.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from cdgan_tf.common import errors


def check_samples(samples) -> int:
  """K as an int >= 1, or ValueError naming eot_samples."""
  if int(samples) != samples or int(samples) < 1:
    raise errors.UsageError(f"eot_samples={samples} must be an integer >= 1")
  return int(samples)


def mean_gradient(gradient_fn: Callable[[], tf.Tensor], samples) -> tf.Tensor:
  """The mean of `samples` calls of `gradient_fn`, each drawing its own randomness.

  Works eagerly and inside tf.function (`samples` may be a scalar tensor: a tf.range
  loop, so K never causes a retrace).

  Args:
    gradient_fn: () -> float32 gradient [N, H, W, C] of one random draw.
    samples: K >= 1.

  Returns:
    float32 [N, H, W, C]: (g_1 + ... + g_K) / K.
  """
  total = gradient_fn()
  for _ in tf.range(1, tf.cast(samples, tf.int32)):
    total += gradient_fn()
  return total / tf.cast(samples, total.dtype)
