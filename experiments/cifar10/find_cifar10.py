"""Finds CIFAR-10 in the class-folder layout, or fetches it through TensorFlow Datasets.

Prints the folder (which has test/<class>/<file>) on stdout, for `make demo`:

  1. --data_dir, else the environment variable CDGAN_DATA_DIR;
  2. ../shared/datasets/cifar10 next to the repository, where it exists;
  3. otherwise `tfds.load("cifar10", split="test")` (a download on a connected
     machine), written once as PNG class folders under --cache_dir.

Label = index of the class folder in sorted order, the same order as TFDS' label names
(airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck).
"""

import os
import pathlib
import sys

from absl import app
from absl import flags
from absl import logging

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
flags.DEFINE_string("data_dir", "", "CIFAR-10 class folders (default: $CDGAN_DATA_DIR, "
                    "then ../shared/datasets/cifar10, then a TFDS download).")
flags.DEFINE_string("cache_dir", os.path.expanduser("~/.cache/cdgan_tf/cifar10"),
                    "Where a TFDS download is written as class folders.")
FLAGS = flags.FLAGS


def _has_test_split(path: pathlib.Path) -> bool:
  test = path / "test"
  return test.is_dir() and any(p.is_dir() for p in test.iterdir())


def _from_tfds(cache: pathlib.Path) -> pathlib.Path:
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel

  done = cache / ".complete"
  if done.exists():
    return cache
  logging.info("CIFAR-10 not found locally; downloading it with TensorFlow Datasets")
  dataset, info = tfds.load("cifar10", split="test", with_info=True, as_supervised=True)
  names = info.features["label"].names
  for index, (image, label) in enumerate(tfds.as_numpy(dataset)):
    folder = cache / "test" / names[int(label)]
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / f"{index:04d}.png")
  done.write_text("ok\n")
  return cache


def main(argv):
  del argv
  candidates = [FLAGS.data_dir, os.environ.get("CDGAN_DATA_DIR", ""),
                str(REPO_ROOT.parent / "shared" / "datasets" / "cifar10")]
  for candidate in candidates:
    if candidate and _has_test_split(pathlib.Path(candidate)):
      print(pathlib.Path(candidate).resolve())
      return
  named = [c for c in candidates[:2] if c]
  if named:
    sys.exit(f"CIFAR-10 class folders not found at {named[0]} (expected test/<class>/<file>)")
  try:
    print(_from_tfds(pathlib.Path(FLAGS.cache_dir)))
  except Exception as e:  # pylint: disable=broad-except
    sys.exit(f"CIFAR-10 not found locally and the TFDS download failed ({e}); pass "
             "--data_dir or set CDGAN_DATA_DIR to a folder with test/<class>/<file>")


if __name__ == "__main__":
  app.run(main)
