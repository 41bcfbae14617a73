"""One pair of images -> the encoded bytes of one record (runs in worker processes).

No TensorFlow here: the builder's worker processes import this module cheaply.

Size checks: a pair whose sides differ by more than `SizeCheck.max_size_ratio` (a 6000 px
adversarial image for a 32 px clean one), or with a side under `SizeCheck.min_size`
pixels, is recorded as a manifest warning ("warn", the default) or skipped ("skip").
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Optional, Tuple

import numpy as np
from PIL import Image

from cdgan_tf.common import checks
from cdgan_tf.common import errors
from cdgan_tf.data import folders
from cdgan_tf.data import image_files

ASPECT_TOLERANCE = 0.02  # Relative; a 224x224 crop vs a 227x224 image still agree.
# zlib level 3: half the time of PIL's default 6 on 224x224 photos, same size (+-1%).
PNG_COMPRESS_LEVEL = 3
ASPECT_MISMATCH = "aspect_mismatch"
SIZE_MISMATCH = "size_mismatch"
TINY_IMAGE = "tiny_image"
SIZE_ACTIONS = ("warn", "skip")


@dataclasses.dataclass(frozen=True)
class SizeCheck:
  """Which pairs are suspicious by size, and what to do with them.

  Attributes:
    max_size_ratio: Largest allowed ratio between a side of the adversarial image and
      the same side of the clean image (as read, before any crop), either way.
    min_size: Smallest allowed side of either image, in pixels.
    action: "warn" (keep the pair, record a manifest warning) or "skip".
  """
  max_size_ratio: float = 4.0
  min_size: int = 8
  action: str = "warn"

  def __post_init__(self):
    checks.check_choice("size_check", self.action, SIZE_ACTIONS)
    if self.max_size_ratio < 1.0 or self.min_size < 1:
      raise errors.UsageError(f"max_size_ratio={self.max_size_ratio} must be >= 1 and "
                              f"min_size={self.min_size} >= 1")

  def problem(self, adversarial: Tuple[int, int], clean: Tuple[int, int],
              prepared: Tuple[int, int]) -> Optional[Tuple[str, str]]:
    """(kind, reason) when the pair's sizes fail a check, else None.

    Args:
      adversarial: (height, width) of the adversarial image.
      clean: (height, width) of the clean image as read.
      prepared: (height, width) of the clean image after the crop (what the record
        pairs with the adversarial image).
    """
    smallest = min(adversarial + clean)
    if smallest < self.min_size:
      return TINY_IMAGE, (f"image side {smallest} px < min_size {self.min_size}: "
                          f"adversarial {adversarial[0]}x{adversarial[1]}, clean "
                          f"{clean[0]}x{clean[1]}")
    ratio = max(max(a / c, c / a) for a, c in zip(adversarial, prepared))
    if ratio > self.max_size_ratio:
      return SIZE_MISMATCH, (f"sizes differ by {ratio:.1f}x > max_size_ratio "
                             f"{self.max_size_ratio:g}: adversarial {adversarial[0]}x"
                             f"{adversarial[1]}, clean {prepared[0]}x{prepared[1]}")
    return None


@dataclasses.dataclass
class Task:
  key: str
  adversarial_path: str
  clean_path: str
  label: int
  crop: str
  size_check: SizeCheck = dataclasses.field(default_factory=lambda: SizeCheck())


def _png(pixels: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
  return buffer.getvalue()


def _is_png_rgb8(data: bytes) -> bool:
  # IHDR: bit depth at byte 24, colour type at byte 25 (2 = truecolour RGB).
  return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25 and data[24] == 8 and data[25] == 2


def _aspect_differs(a, b) -> bool:
  return abs(math.log((a[0] / a[1]) / (b[0] / b[1]))) > ASPECT_TOLERANCE


def encode_pair(task: Task) -> dict:
  """Decodes and encodes one pair (runs in a worker; no TensorFlow here)."""
  result = {"key": task.key, "label": task.label, "converted": [], "skipped": [],
            "warnings": []}
  loaded = {}
  for side, path in (("adversarial", task.adversarial_path), ("clean", task.clean_path)):
    try:
      loaded[side] = image_files.load_image(path)
    except image_files.ImageError as e:
      result["skipped"].append(folders.Skipped(e.path, e.reason, folders.BAD_IMAGE))
  if len(loaded) < 2:
    for side, image in loaded.items():
      path = task.adversarial_path if side == "adversarial" else task.clean_path
      result["skipped"].append(folders.Skipped(
          path, f"its {'clean' if side == 'adversarial' else 'adversarial'} partner could "
          "not be decoded", folders.PARTNER_BAD_IMAGE))
    return result

  adv = loaded["adversarial"]
  if adv.format == "JPEG" or _is_png_rgb8(adv.data):
    adv_encoded = adv.data
    if adv.conversion:
      result["converted"].append((task.adversarial_path, "adversarial",
                                  f"{adv.conversion} when read; stored as original bytes"))
  else:
    adv_encoded = _png(adv.pixels)
    result["converted"].append((task.adversarial_path, "adversarial",
                                f"{adv.format} {adv.mode} re-encoded as 8-bit RGB PNG"
                                + (f" ({adv.conversion})" if adv.conversion else "")))

  clean = loaded["clean"]
  prepared = image_files.prepare_clean(clean.pixels, task.crop)
  as_is = task.crop == "none" and clean.conversion is None and (
      clean.format == "JPEG" or _is_png_rgb8(clean.data))
  clean_encoded = clean.data if as_is else _png(prepared)
  if clean.conversion:
    result["converted"].append((task.clean_path, "clean", clean.conversion))

  adv_size, clean_size = adv.pixels.shape[:2], prepared.shape[:2]
  problem = task.size_check.problem(tuple(adv_size), tuple(clean.pixels.shape[:2]),
                                    tuple(clean_size))
  if problem is not None:
    kind, reason = problem
    if task.size_check.action == "skip":
      for path in (task.adversarial_path, task.clean_path):
        result["skipped"].append(folders.Skipped(path, reason, kind))
      return result
    result["warnings"].append({"key": task.key, "kind": kind, "reason": reason + " (pair kept)",
                               "adversarial_path": task.adversarial_path,
                               "clean_path": task.clean_path})
  if _aspect_differs(adv_size, clean_size):
    result["warnings"].append({
        "key": task.key, "kind": ASPECT_MISMATCH,
        "reason": f"aspect differs after crop={task.crop}: adversarial {adv_size[0]}x"
                  f"{adv_size[1]}, clean {clean_size[0]}x{clean_size[1]} (pair kept)",
        "adversarial_path": task.adversarial_path, "clean_path": task.clean_path})
  result["example"] = (adv_encoded, tuple(adv_size), clean_encoded, tuple(clean_size))
  return result
