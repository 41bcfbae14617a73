"""Perturbation statistics on the 0-255 scale, as DAmageNet reports them."""

from __future__ import annotations

from typing import Dict

import numpy as np

from cdgan_tf.common import errors


def perturbation_stats(clean, adversarial) -> Dict[str, float]:
  """Size of a perturbation on the 0-255 scale, as DAmageNet reports it.

  Args:
    clean: float [N, H, W, C] (or [H, W, C]) in [0, 1].
    adversarial: Same shape, in [0, 1].

  Returns:
    dict with "rmsd_255": mean over images of sqrt(mean over H, W, C of
    (255 * (adv - clean))^2), and "linf_255": max over everything of
    255 * |adv - clean|.
  """
  clean = np.asarray(clean, dtype=np.float64)
  adversarial = np.asarray(adversarial, dtype=np.float64)
  if clean.shape != adversarial.shape:
    raise errors.UsageError(f"clean shape {clean.shape} differs from adversarial shape "
                            f"{adversarial.shape}")
  if clean.ndim == 3:
    clean, adversarial = clean[None], adversarial[None]
  if clean.ndim != 4 or clean.size == 0:
    raise errors.UsageError(f"expected non-empty [N, H, W, C] images, got shape {clean.shape}")
  diff = (adversarial - clean) * 255.0
  rmsd = np.sqrt(np.mean(np.square(diff), axis=(1, 2, 3)))
  return {"rmsd_255": float(np.mean(rmsd)), "linf_255": float(np.max(np.abs(diff)))}
