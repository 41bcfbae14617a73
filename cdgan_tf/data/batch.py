"""The evaluation batch: what the streams yield and the evaluator consumes."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np


@dataclasses.dataclass
class Batch:
  """One batch of evaluation data.

  Attributes:
    labels: int64 [N] true labels (-1 when unknown).
    keys: [N] file names or stems.
    clean: float32 [N, H, W, 3] in [0, 1], or None.
    adversarial: float32 [N, H, W, 3] in [0, 1] (transfer attack), or None.
  """
  labels: np.ndarray
  keys: Sequence[str]
  clean: Optional[np.ndarray] = None
  adversarial: Optional[np.ndarray] = None
