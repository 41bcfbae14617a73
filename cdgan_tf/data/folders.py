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
caller records (decoding and the DAmageNet crop are in `images`). This module does not
import TensorFlow, so process pools can import it cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from typing import Dict, List, Optional, Sequence, Tuple, Union

from cdgan_tf.common import errors

PathLike = Union[str, os.PathLike]

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")

# Skipped.kind values.
NOT_AN_IMAGE = "not_an_image"
DUPLICATE_KEY = "duplicate_key"
NO_CLEAN_PARTNER = "no_clean_partner"
NO_ADVERSARIAL_PARTNER = "no_adversarial_partner"
MISSING_LABEL = "missing_label"
BAD_IMAGE = "bad_image"
NOT_UTF8_NAME = "not_utf8_name"
PARTNER_BAD_IMAGE = "partner_bad_image"


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
        raise errors.UsageError(
            f"{path}:{number}: expected '<file name> <label>', got {line.strip()!r}")
      try:
        label = int(fields[1])
      except ValueError:
        raise errors.UsageError(f"{path}:{number}: label {fields[1]!r} is not an integer") from None
      if label < 0:
        raise errors.UsageError(f"{path}:{number}: label {label} is negative")
      stem = os.path.splitext(os.path.basename(fields[0]))[0]
      if labels.get(stem, label) != label:
        raise errors.UsageError(
            f"{path}:{number}: {stem} already has label {labels[stem]}, now {label}")
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
  names = sorted(e.name for e in os.scandir(root)
                 if e.is_dir() and not e.name.startswith(".") and is_utf8(e.name))
  if not names:
    raise errors.UsageError(f"{root} has no class folders (<dir>/<class>/<file>); give a label "
                            "file for a flat folder of images")
  return names


def is_utf8(name: str) -> bool:
  """Whether a name from the file system is valid UTF-8 (Python keeps other bytes as
  lone surrogates, which any later encode, log line or TensorFlow string rejects)."""
  try:
    name.encode("utf-8")
  except UnicodeEncodeError:
    return False
  return True


def printable(path: str) -> str:
  """`path` with undecodable bytes shown as \\xNN escapes (safe to log and write)."""
  return os.fsencode(path).decode("utf-8", "backslashreplace")


def _not_utf8(path: str) -> Skipped:
  return Skipped(printable(path), "file name is not valid UTF-8 (e.g. latin-1 from an old "
                 "archive); rename it to read it", NOT_UTF8_NAME)


def _is_image(name: str) -> bool:
  return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _index(root: pathlib.Path, flat: bool):
  """{key: [paths]} of the image files under root, and the non-image entries skipped."""
  index: Dict[str, List[str]] = {}
  skipped: List[Skipped] = []
  layout = ("flat layout (<dir>/<stem>.<ext>, used with a label file)" if flat
            else "class-folder layout (<dir>/<class>/<file>)")
  for directory, subdirs, files in os.walk(root):
    skipped.extend(_not_utf8(os.path.join(directory, d)) for d in subdirs if not is_utf8(d))
    subdirs[:] = sorted(d for d in subdirs if is_utf8(d))
    rel_dir = os.path.relpath(directory, root)
    if flat:
      skipped.extend(Skipped(os.path.join(directory, d), f"sub-folder ignored in the {layout}",
                             NOT_AN_IMAGE) for d in subdirs)
      subdirs.clear()
    for name in sorted(files):
      path = os.path.join(directory, name)
      if not is_utf8(name):
        skipped.append(_not_utf8(path))
      elif not _is_image(name):
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
