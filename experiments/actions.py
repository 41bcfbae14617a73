"""The recipe steps that are not a program of the repo: Python functions the runner calls.

Each takes plain arguments (strings, numbers), so a `Job` can record them and hash them.
"""

from __future__ import annotations

import os
import shutil

from cdgan_tf.common import files

ROLES = ("sub", "super")


def ship_generators(runs: str, destination: str) -> None:
  """Copies `runs/{sub,super}`'s exported generators to `destination/{sub,super}`.

  Through `cdgan_tf.models.generator_files`: the super generator's `generator.json`
  records the shipped sub generator (`destination/sub`) as the one it was trained on,
  instead of the run folder it came from.
  """
  from cdgan_tf.models import generator_files  # pylint: disable=import-outside-toplevel
  shipped_sub = os.path.join(destination, "sub")
  for role in ROLES:
    source = os.path.join(runs, role)
    info = generator_files.read_info(source)
    changes = {"sub_model": shipped_sub} if info is not None and info.sub_model else {}
    path = generator_files.copy_generator(source, os.path.join(destination, role), **changes)
    print(f"  shipped {source} -> {path}")


def split_test_train(val_dir: str, labels: str, work: str, test_images: int) -> None:
  """The labelled folder's images outside its test split, as a folder of symlinks.

  The test split is `folders.select_subset(<all stems>, test_images)`: exactly what
  `evaluate.py --clean_dir=val_dir --labels=labels --max_images=test_images` evaluates.
  Writes `work/val_train/` (symlinks to the other images) and `work/val_split.json`
  ({"test": [...], "train": [...]}).
  """
  from cdgan_tf.data import folders  # pylint: disable=import-outside-toplevel
  images, _ = folders.list_labelled_images(val_dir, labels)
  test = set(folders.select_subset([k for k, _, _ in images], test_images))
  train_dir = os.path.join(work, "val_train")
  os.makedirs(train_dir, exist_ok=True)
  for key, path, _ in images:
    link = os.path.join(train_dir, os.path.basename(path))
    if key not in test and not os.path.lexists(link):
      os.symlink(os.path.abspath(path), link)
  files.write_json(os.path.join(work, "val_split.json"),
                   {"test": sorted(test), "train": sorted(k for k, _, _ in images
                                                          if k not in test)}, indent=0)
  print(f"  {len(images)} images: {len(test)} test, {len(images) - len(test)} train "
        f"({train_dir})")


def copy_run(source: str, destination: str) -> None:
  """Copies a training run folder once (a run continued under another name)."""
  if os.path.exists(destination):
    print(f"  {destination} exists: kept")
    return
  shutil.copytree(source, destination, symlinks=True)
  print(f"  copied {source} -> {destination}")
