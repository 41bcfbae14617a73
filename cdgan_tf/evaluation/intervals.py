"""Uncertainty of the evaluation's accuracies: Wilson intervals and paired McNemar tests.

Every accuracy of an evaluation is a count of correct predictions out of n images, so
its 95 % interval is the Wilson score interval of a binomial proportion (Wilson 1927;
Agresti & Coull 1998: it keeps its coverage near 0 % and 100 %, where the normal
approximation does not). Two defenses scored on the same images are compared with
McNemar's test on the images where exactly one of them is right, computed exactly (the
two-sided binomial test of the discordant counts against p = 1/2), which is valid for
any count, small or large.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Optional, Sequence, Tuple

import numpy as np

from cdgan_tf.common import errors

Z95 = 1.959963984540054  # The 0.975 quantile of the standard normal.
INTERVAL_METHOD = "wilson"
PAIRED_TEST_METHOD = "mcnemar_exact"


def wilson(correct: int, total: int, z: float = Z95) -> Optional[Tuple[float, float]]:
  """The Wilson score interval of correct / total.

  Args:
    correct: Successes, 0 <= correct <= total.
    total: Trials; 0 gives None.
    z: Normal quantile (default: 95 % two-sided).

  Returns:
    (low, high) fractions in [0, 1], or None when total == 0.
  """
  if total <= 0:
    return None
  if not 0 <= correct <= total:
    raise errors.UsageError(f"correct={correct} must be in [0, total={total}]")
  p = correct / total
  z2 = z * z
  denominator = 1.0 + z2 / total
  centre = (p + z2 / (2 * total)) / denominator
  half = z / denominator * math.sqrt(p * (1.0 - p) / total + z2 / (4.0 * total * total))
  return max(0.0, centre - half), min(1.0, centre + half)


def discordant(first: Sequence[bool], second: Sequence[bool]) -> Tuple[int, int]:
  """(b, c): images only `first` gets right, images only `second` gets right.

  Args:
    first, second: bool [N] per-image correctness of two methods on the same images in
      the same order.
  """
  first = np.asarray(first, dtype=bool).reshape(-1)
  second = np.asarray(second, dtype=bool).reshape(-1)
  if first.shape != second.shape:
    raise errors.UsageError(f"paired test on different images: {first.size} vs {second.size}")
  return int(np.sum(first & ~second)), int(np.sum(~first & second))


def mcnemar_exact(b: int, c: int) -> float:
  """Two-sided exact McNemar p-value of discordant counts b and c.

  Under the null hypothesis (both methods equally accurate) each of the n = b + c
  discordant images is a fair coin: p = min(1, 2 * P[Binomial(n, 1/2) <= min(b, c)]).
  Computed in exact rational arithmetic; n = 0 gives 1.
  """
  if b < 0 or c < 0:
    raise errors.UsageError(f"discordant counts must be >= 0, got {b}, {c}")
  n = b + c
  if n == 0:
    return 1.0
  tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
  return float(min(Fraction(1), Fraction(2 * tail, 2 ** n)))


def paired_p_value(first: Sequence[bool], second: Sequence[bool]) -> float:
  """McNemar exact p-value of two per-image correctness vectors (see `discordant`)."""
  return mcnemar_exact(*discordant(first, second))
