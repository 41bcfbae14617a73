"""Image folders, label files and the pairing of adversarial with clean images.

`tfrecords_builder` and `evaluate.py` both pair folders through this module, so the
training records and the evaluation see the same pairs, labels and pixels.

Two layouts:
  * flat, with a label file (`labels_path`): `<dir>/<stem>.<ext>`, paired by file stem
    (`DAmageNet/ILSVRC2012_val_00000046.png` <-> `ILSVRC2012_img_val/
    ILSVRC2012_val_00000046.JPEG`); the label file has lines `<file name> <label>` and
    is keyed by stem (`read_label_file`).
  * class folders, without a label file: `<dir>/<class>/<file>`, paired by the relative
    path without extension (`cat/0001`); label = index of the class folder in the sorted
    class folders of the clean directory (CIFAR-style sets).

Nothing here crashes on a bad input file: pairing returns the pairs and a list of
`Skipped(path, reason, kind)`; decoding raises `ImageError(path, reason)`, which the
caller records. Pixels here are numpy uint8 [H, W, 3] RGB in [0, 255] (file-level
work, before the float32 [0, 1] boundary of the library). This module does not import
TensorFlow, so process pools can import it cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pathlib
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

PathLike = Union[str, os.PathLike]

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
CROPS = ("none", "damagenet")
DAMAGENET_SIZE = 224

# Skipped.kind values.
NOT_AN_IMAGE = "not_an_image"
DUPLICATE_KEY = "duplicate_key"
NO_CLEAN_PARTNER = "no_clean_partner"
NO_ADVERSARIAL_PARTNER = "no_adversarial_partner"
MISSING_LABEL = "missing_label"
BAD_IMAGE = "bad_image"
PARTNER_BAD_IMAGE = "partner_bad_image"


class ImageError(Exception):
  """An image file that cannot be read or decoded."""

  def __init__(self, path: PathLike, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = str(path)
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class Pair:
  """One adversarial image and its clean original (label -1 when unknown)."""
  key: str
  adversarial_path: str
  clean_path: str
  label: int


@dataclasses.dataclass(frozen=True)
class Skipped:
  """An input file left out, why, and a machine-readable `kind` (constants above)."""
  path: str
  reason: str
  kind: str = "other"


@dataclasses.dataclass(frozen=True)
class LoadedImage:
  """A decoded file: RGB pixels, the original bytes, PIL format/mode and conversion."""
  pixels: np.ndarray
  data: bytes
  format: str
  mode: str
  conversion: Optional[str]


def select_subset(keys: Sequence[str], max_images: int) -> List[str]:
  """The `max_images` keys with the smallest sha256 (all when 0), in sorted order.

  A fixed pseudo-random subset, the same for every run, so a class-folder set is sampled
  across its classes rather than taking the first classes only. The transfer-set
  generator and evaluate.py both use it, so `--max_images=N` picks the same images.
  """
  if max_images <= 0 or max_images >= len(keys):
    return sorted(keys)
  ranked = sorted(keys, key=lambda k: hashlib.sha256(k.encode("utf-8")).digest())
  return sorted(ranked[:max_images])


def read_label_file(path: PathLike) -> Dict[str, int]:
  """Reads `<file name> <label>` lines into {stem: label}.

  Blank lines are ignored. `ILSVRC2012_val_00000001.JPEG 65` gives
  {"ILSVRC2012_val_00000001": 65}.

  Raises:
    FileNotFoundError: no such file.
    ValueError: a bad line (names file and line number), a negative label, or one stem
      given two different labels.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"label file {path} does not exist")
  labels: Dict[str, int] = {}
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) != 2:
        raise ValueError(f"{path}:{number}: expected '<file name> <label>', got {line.strip()!r}")
      try:
        label = int(fields[1])
      except ValueError:
        raise ValueError(f"{path}:{number}: label {fields[1]!r} is not an integer") from None
      if label < 0:
        raise ValueError(f"{path}:{number}: label {label} is negative")
      stem = os.path.splitext(os.path.basename(fields[0]))[0]
      if labels.get(stem, label) != label:
        raise ValueError(f"{path}:{number}: {stem} already has label {labels[stem]}, now {label}")
      labels[stem] = label
  return labels


def _check_dir(path: PathLike, what: str) -> pathlib.Path:
  path = pathlib.Path(path)
  if not path.is_dir():
    raise NotADirectoryError(f"{what} {path} is not a directory")
  return path


def class_names(root: PathLike) -> List[str]:
  """Sorted names of the class folders (non-hidden sub-directories) of `root`.

  Raises:
    NotADirectoryError: `root` is not a directory.
    ValueError: `root` has no class folder.
  """
  root = _check_dir(root, "image directory")
  names = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
  if not names:
    raise ValueError(f"{root} has no class folders (<dir>/<class>/<file>); give a label "
                     "file for a flat folder of images")
  return names


def _is_image(name: str) -> bool:
  return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _index(root: pathlib.Path, flat: bool):
  """{key: [paths]} of the image files under root, and the non-image entries skipped."""
  index: Dict[str, List[str]] = {}
  skipped: List[Skipped] = []
  layout = ("flat layout (<dir>/<stem>.<ext>, used with a label file)" if flat
            else "class-folder layout (<dir>/<class>/<file>)")
  for directory, subdirs, files in os.walk(root):
    subdirs.sort()
    rel_dir = os.path.relpath(directory, root)
    if flat:
      skipped.extend(Skipped(os.path.join(directory, d), f"sub-folder ignored in the {layout}",
                             NOT_AN_IMAGE) for d in subdirs)
      subdirs.clear()
    for name in sorted(files):
      path = os.path.join(directory, name)
      if not _is_image(name):
        skipped.append(Skipped(path, f"not an image (extension not in {IMAGE_EXTENSIONS})",
                               NOT_AN_IMAGE))
      elif not flat and rel_dir == ".":
        skipped.append(Skipped(path, f"not inside a class folder in the {layout}", NOT_AN_IMAGE))
      else:
        stem = os.path.splitext(name)[0]
        key = stem if flat else pathlib.PurePath(rel_dir, stem).as_posix()
        index.setdefault(key, []).append(path)
  return index, skipped


def _split_duplicates(index, skipped):
  """Removes keys with several files (x.png and x.jpg) from index; lists every file."""
  duplicates = set()
  for key, paths in index.items():
    if len(paths) > 1:
      duplicates.add(key)
      for path in paths:
        others = ", ".join(os.path.basename(p) for p in paths if p != path)
        skipped.append(Skipped(path, f"duplicate key {key!r}: also {others}", DUPLICATE_KEY))
  return {k: v[0] for k, v in index.items() if k not in duplicates}, duplicates


def _labeller(clean_dir: pathlib.Path, labels_path: Optional[PathLike]):
  if labels_path is not None:
    labels = read_label_file(labels_path)
    return labels.get
  label_of = {name: i for i, name in enumerate(class_names(clean_dir))}
  return lambda key: label_of.get(key.split("/", 1)[0])


def _missing_label_reason(key: str, labels_path: Optional[PathLike]) -> str:
  if labels_path is not None:
    return f"key {key!r} not in label file {labels_path}"
  return f"class folder of {key!r} is not a class folder of the clean directory"


def list_labelled_images(clean_dir: PathLike, labels_path: Optional[PathLike] = None
                         ) -> Tuple[List[Tuple[str, str, int]], List[Skipped]]:
  """Lists the images of one folder with their labels (clean-only evaluation).

  Args:
    clean_dir: Flat folder (with `labels_path`) or class-folder root (without).
    labels_path: Optional label file, see `read_label_file`.

  Returns:
    ([(key, path, label)] sorted by key, [Skipped]).
  """
  clean_dir = _check_dir(clean_dir, "clean directory")
  label_of = _labeller(clean_dir, labels_path)
  index, skipped = _index(clean_dir, flat=labels_path is not None)
  index, _ = _split_duplicates(index, skipped)
  images = []
  for key in sorted(index):
    label = label_of(key)
    if label is None:
      skipped.append(Skipped(index[key], _missing_label_reason(key, labels_path), MISSING_LABEL))
    else:
      images.append((key, index[key], label))
  return images, skipped


def pair_folders(adversarial_dir: PathLike, clean_dir: PathLike,
                 labels_path: Optional[PathLike] = None) -> Tuple[List[Pair], List[Skipped]]:
  """Pairs each adversarial image with its clean original.

  Args:
    adversarial_dir: Folder of adversarial images.
    clean_dir: Folder of clean images, same layout.
    labels_path: Label file for the flat layout; None for the class-folder layout.

  Returns:
    (pairs sorted by key, skipped): every input file is either in a pair or in
    `skipped` (no partner on the other side, missing label, duplicate key, not an image).

  Raises:
    NotADirectoryError, FileNotFoundError, ValueError: bad directory or label file.
  """
  adversarial_dir = _check_dir(adversarial_dir, "adversarial directory")
  clean_dir = _check_dir(clean_dir, "clean directory")
  label_of = _labeller(clean_dir, labels_path)
  flat = labels_path is not None
  adv_index, skipped = _index(adversarial_dir, flat)
  clean_index, clean_skipped = _index(clean_dir, flat)
  skipped += clean_skipped
  adv_index, adv_dups = _split_duplicates(adv_index, skipped)
  clean_index, clean_dups = _split_duplicates(clean_index, skipped)
  for index, dups in ((adv_index, clean_dups), (clean_index, adv_dups)):
    for key in sorted(dups & index.keys()):
      skipped.append(Skipped(index.pop(key), f"its partner key {key!r} is duplicated on the "
                             "other side", DUPLICATE_KEY))
  pairs = []
  for key in sorted(adv_index.keys() | clean_index.keys()):
    adv, clean = adv_index.get(key), clean_index.get(key)
    if clean is None:
      skipped.append(Skipped(adv, f"no clean image with key {key!r} in {clean_dir}",
                             NO_CLEAN_PARTNER))
      continue
    if adv is None:
      skipped.append(Skipped(clean, f"no adversarial image with key {key!r} in "
                             f"{adversarial_dir}", NO_ADVERSARIAL_PARTNER))
      continue
    label = label_of(key)
    if label is None:
      reason = _missing_label_reason(key, labels_path)
      skipped += [Skipped(adv, reason, MISSING_LABEL), Skipped(clean, reason, MISSING_LABEL)]
      continue
    pairs.append(Pair(key, adv, clean, label))
  return pairs, skipped


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


def decode_rgb(data: bytes, name: PathLike = "<bytes>") -> LoadedImage:
  """Decodes image bytes with PIL into RGB; see `load_image`."""
  if not data:
    raise ImageError(name, "empty file (0 bytes)")
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      pixels, conversion = _to_rgb(image)
      frames = getattr(image, "n_frames", 1)
      if frames > 1:
        conversion = "; ".join(filter(None, [conversion, f"first of {frames} frames"]))
      return LoadedImage(np.ascontiguousarray(pixels, np.uint8), data, image.format or "",
                         image.mode, conversion)
  except Image.UnidentifiedImageError as e:
    raise ImageError(name, f"cannot decode: not a known image format (starts {data[:8]!r})"
                     ) from e
  except Exception as e:  # PIL raises many types on bad files; none may crash a build.
    raise ImageError(name, f"cannot decode ({type(e).__name__}: {e})") from e


def load_image(path: PathLike) -> LoadedImage:
  """Reads and decodes one image file.

  Grayscale, palette, CMYK and 16-bit images are converted to 8-bit RGB and alpha is
  dropped (as `tf.io.decode_image(channels=3)` and DAmageNet's `convert('RGB')` do);
  `conversion` says what happened (None for 8-bit RGB). EXIF orientation is not
  applied (neither ImageNet tooling nor TensorFlow applies it).

  Raises:
    ImageError: unreadable, empty, truncated or undecodable file.
  """
  try:
    data = pathlib.Path(path).read_bytes()
  except OSError as e:
    raise ImageError(path, f"cannot read ({e.strerror or e})") from e
  return decode_rgb(data, path)


def load_rgb(path: PathLike) -> np.ndarray:
  """uint8 [H, W, 3] RGB pixels of an image file (`load_image(path).pixels`).

  Raises:
    ImageError: see `load_image` (which also reports the conversion applied).
  """
  return load_image(path).pixels


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
  if crop not in CROPS:
    raise ValueError(f"crop={crop!r} is not one of {', '.join(CROPS)}")
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"expected uint8 [H, W, 3], got {image.dtype} {image.shape}")
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
