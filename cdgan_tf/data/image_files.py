"""Decoding image files into RGB pixels, and preparing clean images as DAmageNet did.

Pixels here are numpy uint8 [H, W, 3] RGB in [0, 255] (file-level work, before the
float32 [0, 1] boundary of the library). Decoding never crashes a caller on a bad file:
it raises `ImageError(path, reason)`, which callers record and skip. This module does not
import TensorFlow, so process pools can import it cheaply.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
import os
from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image

from cdgan_tf.common import checks
from cdgan_tf.common import errors

PathLike = Union[str, os.PathLike]
CROPS = ("none", "damagenet")
DAMAGENET_SIZE = 224
# Decoded pixels above which an image is refused before it is decoded: 2**23 (8.4 M,
# e.g. 4096x2048 or 2896x2896: 24 MiB as uint8 RGB, 96 MiB as float32). Sized for the
# 23 GB, 2-core machine this project runs on, shared by several jobs: a 4000x4000 clean
# image took the transfer-set generator to 4.4 GB. Every ImageNet validation image of
# the shared sample and DAmageNet's 224x224 fit far below it.
MAX_PIXELS = 1 << 23


def over_limit_reason(width: int, height: int, max_pixels: int = MAX_PIXELS
                      ) -> Optional[str]:
  """Why a `width` x `height` image is refused (None when it fits `max_pixels`)."""
  if max_pixels and width * height > max_pixels:
    return (f"{width}x{height} = {width * height} decoded pixels, over the limit of "
            f"{max_pixels} (--max_pixels); refused before decoding")
  return None


class ImageError(Exception):
  """An image file that cannot be read or decoded."""

  def __init__(self, path: PathLike, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = str(path)
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class LoadedImage:
  """A decoded file: RGB pixels, the original bytes, PIL format/mode and conversion."""
  pixels: np.ndarray
  data: bytes
  format: str
  mode: str
  conversion: Optional[str]


def _to_rgb(image: Image.Image) -> Tuple[np.ndarray, Optional[str]]:
  """PIL image -> (uint8 [H, W, 3], None or a description of the conversion)."""
  mode = image.mode
  if mode == "RGB":
    return np.asarray(image), None
  if mode.startswith("I;16") or mode == "I":
    gray = (np.clip(np.asarray(image).astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1), f"16-bit grayscale ({mode}) -> 8-bit RGB"
  if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
    reason = f"{mode} -> RGB: alpha channel dropped (not composited)"
  elif mode in ("L", "1"):
    reason = f"grayscale ({mode}) -> RGB"
  elif mode == "P":
    reason = "palette (P) -> RGB" + (", transparency ignored"
                                     if "transparency" in image.info else "")
  elif mode == "CMYK":
    reason = "CMYK -> RGB (PIL conversion)"
  else:
    reason = f"{mode} -> RGB (PIL conversion)"
  return np.asarray(image.convert("RGB")), reason


def decode_rgb(data: bytes, name: PathLike = "<bytes>",
               max_pixels: int = MAX_PIXELS) -> LoadedImage:
  """Decodes image bytes with PIL into RGB; see `load_image`."""
  if not data:
    raise ImageError(name, "empty file (0 bytes)")
  try:
    with Image.open(io.BytesIO(data)) as image:
      too_big = over_limit_reason(*image.size, max_pixels)  # From the header only.
      if too_big:
        raise ImageError(name, too_big)
      image.load()
      pixels, conversion = _to_rgb(image)
      frames = getattr(image, "n_frames", 1)
      if frames > 1:
        conversion = "; ".join(filter(None, [conversion, f"first of {frames} frames"]))
      return LoadedImage(np.ascontiguousarray(pixels, np.uint8), data, image.format or "",
                         image.mode, conversion)
  except ImageError:
    raise
  except Image.UnidentifiedImageError as e:
    raise ImageError(name, f"cannot decode: not a known image format (starts {data[:8]!r})"
                     ) from e
  except Exception as e:  # PIL raises many types on bad files; none may crash a build.
    raise ImageError(name, f"cannot decode ({type(e).__name__}: {e})") from e


def load_image(path: PathLike, max_pixels: int = MAX_PIXELS) -> LoadedImage:
  """Reads and decodes one image file.

  Grayscale, palette, CMYK and 16-bit images are converted to 8-bit RGB and alpha is
  dropped (as `tf.io.decode_image(channels=3)` and DAmageNet's `convert('RGB')` do);
  `conversion` says what happened (None for 8-bit RGB). EXIF orientation is not
  applied (neither ImageNet tooling nor TensorFlow applies it).

  Raises:
    ImageError: unreadable, empty, truncated or undecodable file, or one of more than
      `max_pixels` decoded pixels (checked from the header, before decoding; 0: no
      limit).
  """
  try:
    data = pathlib.Path(path).read_bytes()
  except OSError as e:
    raise ImageError(path, f"cannot read ({e.strerror or e})") from e
  return decode_rgb(data, path, max_pixels)


def load_rgb(path: PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
  """uint8 [H, W, 3] RGB pixels of an image file (`load_image(path).pixels`).

  Raises:
    ImageError: see `load_image` (which also reports the conversion applied).
  """
  return load_image(path, max_pixels).pixels


def _cv2_stretch_rows(image: np.ndarray, out_rows: int) -> np.ndarray:
  """Bit-exact emulation of `cv2.resize(image, (W, out_rows))` (INTER_LINEAR, uint8).

  Only the row count changes. OpenCV maps output row y to source row
  fy = (y + 0.5) * scale - 0.5 (float32), uses 11-bit fixed-point weights rounded with
  cvRound, and its x86 SIMD vertical pass computes
  ((S0*128*b0 >> 16) + (S1*128*b1 >> 16) + 2) >> 2 on 8-bit rows. Checked against
  opencv-python-headless (0 differing values on random images).
  """
  rows = image.shape[0]
  scale = 1.0 / (out_rows / rows)
  y = np.arange(out_rows, dtype=np.float64)
  fy = ((y + 0.5) * scale - 0.5).astype(np.float32)
  sy = np.floor(fy).astype(np.int64)
  fy = (fy - sy.astype(np.float32)).astype(np.float32)
  low, high = sy < 0, sy >= rows - 1
  fy[low | high] = 0
  sy[low] = 0
  sy[high] = rows - 1
  b0 = np.rint((np.float32(1) - fy) * np.float32(2048)).astype(np.int64)[:, None, None]
  b1 = np.rint(fy * np.float32(2048)).astype(np.int64)[:, None, None]
  s0 = image[sy].astype(np.int64) * 128
  s1 = image[np.minimum(sy + 1, rows - 1)].astype(np.int64) * 128
  out = (((s0 * b0) >> 16) + ((s1 * b1) >> 16) + 2) >> 2
  return np.clip(out, 0, 255).astype(np.uint8)


def prepare_clean(image: np.ndarray, crop: str = "none") -> np.ndarray:
  """Prepares a clean image the way its adversarial partner was made.

  crop="none" returns the image unchanged. crop="damagenet" reproduces
  `process_sample(path, 224)` of DAmageNet's tooling (Sizhe-Chen/DAmageNet, utils.py
  and test.py; pinned to Pillow 6.2.1 and opencv 4.1.2):
    1. PIL `resize` with the default filter of Pillow < 7, which is NEAREST, so the
       short side becomes 224 and the long side int(224 / short * long) (truncated,
       evaluated in this float order; landscape when height < width, else portrait);
    2. numpy crop [int((L - 224) / 2) : int((L + 224) / 2)] of the long side L;
    3. `cv2.resize(..., (224, 224))` (bilinear); a no-op except for square images whose
       int() truncates to 223 rows (e.g. 299x299), which it stretches back to 224.
  On the published pair ILSVRC2012_val_00000046 this gives RMSE 6.62 (0-255 scale) to
  the DAmageNet image and every pixel difference lies in [-26, 25], i.e. within AoA's
  L_inf bound of 25.5 plus uint8 truncation, so the pair is aligned pixel-exactly.
  Bicubic (Pillow >= 7 default, RMSE 9.19), bilinear (9.44), Lanczos (9.25), TF bicubic
  with antialias (9.19) or a crop offset of +-1 px (15.0-16.6) all break that bound.

  Args:
    image: uint8 [H, W, 3] RGB.
    crop: "none" or "damagenet".

  Returns:
    uint8 [H, W, 3] ("none") or [224, 224, 3] ("damagenet").
  """
  checks.check_choice("crop", crop, CROPS)
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise errors.UsageError(f"expected uint8 [H, W, 3], got {image.dtype} {image.shape}")
  if crop == "none":
    return image
  size = DAMAGENET_SIZE
  height, width = image.shape[:2]
  short, long_ = min(width, height), max(width, height)
  long_new = int(size / short * long_)
  if height < width:
    resized = np.asarray(Image.fromarray(image).resize((long_new, size), Image.NEAREST))
  else:
    resized = np.asarray(Image.fromarray(image).resize((size, long_new), Image.NEAREST))
  extent = max(long_new, size)
  low, high = int((extent - size) / 2), int((extent + size) / 2)
  cropped = resized[:, low:high] if height < width else resized[low:high]
  if cropped.shape[:2] != (size, size):
    cropped = _cv2_stretch_rows(cropped, size)
  return np.ascontiguousarray(cropped)


def header_size(path: str):
  """(height, width) of an image file from its header (no decoding).

  Raises:
    ImageError: the header cannot be read.
  """
  try:
    with Image.open(path) as image:
      return (image.size[1], image.size[0])
  except Exception as e:  # PIL raises many types on bad files; none may crash a run.
    raise ImageError(
        path, f"cannot read the image header ({type(e).__name__}: {e})") from e
