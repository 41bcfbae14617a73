"""Evaluation streams: image folders or TFRecords -> batches (`batch.Batch`).

Folders are paired exactly as `tfrecords_builder` pairs them (`folders.pair_folders`,
DAmageNet stems or class folders) and the clean side is prepared with the same crop
(`--crop=damagenet`), so evaluation and training see the same pixels. The stream is
lazy: one batch of images is in memory at a time.

A batch needs one image size. Images are kept at their own size when all share it
(DAmageNet and its prepared clean originals are 224x224; the ImageNet sample is
227x227; CIFAR-10 is 32x32); an image of another size is resized (bicubic,
antialiased) to `image_size`, or to the first image's size when `image_size` is unset.
"""

from __future__ import annotations

import dataclasses
import glob
from typing import Iterator, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from cdgan_tf.common import checks
from cdgan_tf import image_ops
from cdgan_tf.common import errors
from cdgan_tf.data import features
from cdgan_tf.data import folders
from cdgan_tf.data import image_files
from cdgan_tf.data import shards
from cdgan_tf.data.batch import Batch


@dataclasses.dataclass
class Source:
  """What an evaluation stream holds, for the report.

  Attributes:
    description: Where the images come from.
    count: Images (or pairs) that will be evaluated.
    skipped: Inputs left out, with reasons.
  """
  description: str
  count: int
  skipped: List[folders.Skipped] = dataclasses.field(default_factory=list)
  resized: int = 0


def _to_size(image: np.ndarray, size: Optional[Tuple[int, int]]) -> np.ndarray:
  """uint8 [H, W, 3] -> float32 [h, w, 3] in [0, 1] at `size`."""
  pixels = image.astype(np.float32) / 255.0
  if size is not None and pixels.shape[:2] != tuple(size):
    pixels = image_ops.resize(pixels, size).numpy()
  return pixels


class FolderStream:
  """Batches from image folders.

  Args:
    clean_dir: Clean images (flat with `labels_path`, else class folders).
    adversarial_dir: Adversarial images paired by stem / relative path, or None.
    labels_path: Label file (`<file> <label>` lines), or None for class folders.
    crop: "none" or "damagenet" (clean side prepared as DAmageNet did).
    batch_size: Images per batch.
    max_images: Evaluate only a fixed pseudo-random subset of N (`folders.
      select_subset`, spread over the classes); 0 for all.
    image_size: Common (height, width), or None (see the module docstring).
    max_pixels: Images of more decoded pixels are skipped (and listed) before they are
      decoded; 0: no limit.
  """

  def __init__(self, clean_dir: str, adversarial_dir: Optional[str] = None,
               labels_path: Optional[str] = None, crop: str = "none", batch_size: int = 32,
               max_images: int = 0, image_size: Optional[Sequence[int]] = None,
               max_pixels: int = image_files.MAX_PIXELS):
    checks.check_choice("crop", crop, image_files.CROPS)
    self.max_pixels = max_pixels
    self.crop = crop
    self.batch_size = batch_size
    self.size = tuple(image_size) if image_size else None
    if adversarial_dir:
      pairs, skipped = folders.pair_folders(adversarial_dir, clean_dir, labels_path)
      self.items = [(p.key, p.clean_path, p.adversarial_path, p.label) for p in pairs]
      what = f"{len(pairs)} pairs of {adversarial_dir} with {clean_dir}"
    else:
      images, skipped = folders.list_labelled_images(clean_dir, labels_path)
      self.items = [(key, path, None, label) for key, path, label in images]
      what = f"{len(images)} images of {clean_dir}"
    if max_images:  # The same pseudo-random subset as the transfer-set generator's.
      keep = set(folders.select_subset([item[0] for item in self.items], max_images))
      self.items = [item for item in self.items if item[0] in keep]
    self.items.sort(key=lambda item: item[0])
    if not self.items:
      raise errors.UsageError(f"no images to evaluate: {what} ({len(skipped)} inputs skipped"
                              + (f", first: {skipped[0].path}: {skipped[0].reason}" if skipped
                          else "") + ")")
    self.source = Source(description=what, count=len(self.items), skipped=skipped)

  def _load(self, path, clean: bool) -> Optional[np.ndarray]:
    try:
      image = image_files.load_rgb(path, self.max_pixels)
    except image_files.ImageError as e:
      self.source.skipped.append(folders.Skipped(str(path), e.reason, folders.BAD_IMAGE))
      logging.warning("skipped %s", e)
      return None
    if clean:
      image = image_files.prepare_clean(image, self.crop)
    if self.size is None:
      self.size = image.shape[:2]
    if image.shape[:2] != self.size:
      self.source.resized += 1
    return _to_size(image, self.size)

  def __iter__(self) -> Iterator[Batch]:
    for start in range(0, len(self.items), self.batch_size):
      keys, clean, adversarial, labels = [], [], [], []
      for key, clean_path, adversarial_path, label in self.items[start:start +
                                                                  self.batch_size]:
        clean_image = self._load(clean_path, clean=True)
        adversarial_image = (self._load(adversarial_path, clean=False)
                             if adversarial_path else None)
        if clean_image is None or (adversarial_path and adversarial_image is None):
          continue
        keys.append(key)
        labels.append(label)
        clean.append(clean_image)
        if adversarial_image is not None:
          adversarial.append(adversarial_image)
      if keys:
        yield Batch(labels=np.asarray(labels, np.int64), keys=keys,
                    clean=np.stack(clean),
                    adversarial=np.stack(adversarial) if adversarial else None)


class RecordStream:
  """Batches from TFRecords written by tfrecords_builder (both sides, label, name).

  Args:
    pattern: Glob of record shards.
    batch_size: Images per batch.
    max_images: Only the first N records (in sorted shard order); 0 for all.
    image_size: Common (height, width), or None for the first record's size.
    skip_damaged_shards: Leave out shards that differ from their manifest.json
      instead of refusing them (`shards.check_files`).
  """

  def __init__(self, pattern: str, batch_size: int = 32, max_images: int = 0,
               image_size: Optional[Sequence[int]] = None,
               skip_damaged_shards: bool = False):
    self.files = sorted(glob.glob(pattern))
    if not self.files:
      raise errors.UsageError(f"no TFRecord files match {pattern!r}")
    self.files = shards.check_files(self.files, skip_damaged_shards)
    dataset = tf.data.TFRecordDataset(self.files).map(features.parse_example)
    if max_images:
      dataset = dataset.take(max_images)
    if image_size is None:
      first = next(iter(dataset.take(1)), None)
      if first is None:
        raise errors.UsageError(f"the records matching {pattern!r} are empty")
      image_size = tuple(first["clean"].shape[:2])
    self.size = tuple(image_size)

    def to_size(example):
      return {"clean": image_ops.resize(example["clean"], self.size),
              "adversarial": image_ops.resize(example["adversarial"], self.size),
              "label": example["label"], "file_name": example["file_name"]}

    self.dataset = dataset.map(to_size).batch(batch_size).prefetch(1)
    count = sum(1 for _ in tf.data.TFRecordDataset(self.files))
    self.source = Source(description=f"{len(self.files)} record files matching {pattern}",
                         count=min(count, max_images) if max_images else count)

  def __iter__(self) -> Iterator[Batch]:
    for batch in self.dataset:
      yield Batch(labels=batch["label"].numpy(),
                  keys=[k.decode("utf-8") for k in batch["file_name"].numpy()],
                  clean=batch["clean"].numpy(), adversarial=batch["adversarial"].numpy())
