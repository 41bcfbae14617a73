"""Finds CIFAR-10 class folders for `make demo`; prints the folder on stdout.

The folder holds test/<class>/<file> (label = index of the class folder in sorted order,
the same order as TFDS' label names: airplane, automobile, bird, cat, deer, dog, frog,
horse, ship, truck). Where it comes from, first match wins:

  1. --data_dir: a folder, or "sample" (the built-in sample), "shared"
     (../shared/datasets/cifar10 next to the repository) or "tfds" (a TensorFlow
     Datasets download, written once as PNG class folders under --cache_dir);
  2. the environment variable CDGAN_DATA_DIR (the same choices);
  3. the built-in sample: experiments/cifar10/sample (500 test images, 50 per class),
     which needs nothing outside the repository.
"""

import os
import pathlib

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  # Quiet TensorFlow's logs unless --verbose; only a TFDS download imports it.
  cli.start(tensorflow=False)

from absl import flags  # pylint: disable=g-bad-import-order
from absl import logging

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "experiments" / "cifar10" / "sample"
SHARED = REPO_ROOT.parent / "shared" / "datasets" / "cifar10"
flags.DEFINE_string("data_dir", "", "CIFAR-10 class folders, or sample / shared / tfds "
                    "(default: $CDGAN_DATA_DIR, else the built-in sample).")
flags.DEFINE_string("cache_dir", os.path.expanduser("~/.cache/cdgan_tf/cifar10"),
                    "Where a TFDS download is written as class folders.")
FLAGS = flags.FLAGS


def has_test_split(path: pathlib.Path) -> bool:
  test = path / "test"
  return test.is_dir() and any(p.is_dir() for p in test.iterdir())


def _from_tfds(cache: pathlib.Path) -> pathlib.Path:
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel

  done = cache / ".complete"
  if done.exists():
    return cache
  logging.info("downloading CIFAR-10 with TensorFlow Datasets")
  dataset, info = tfds.load("cifar10", split="test", with_info=True, as_supervised=True)
  names = info.features["label"].names
  for index, (image, label) in enumerate(tfds.as_numpy(dataset)):
    folder = cache / "test" / names[int(label)]
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / f"{index:04d}.png")
  done.write_text("ok\n")
  return cache


def resolve(choice: str, cache_dir: str) -> pathlib.Path:
  """The folder for a --data_dir / CDGAN_DATA_DIR value ("" = the built-in sample)."""
  if choice in ("", "sample"):
    return SAMPLE
  if choice == "tfds":
    try:
      return _from_tfds(pathlib.Path(cache_dir))
    except Exception as e:  # pylint: disable=broad-except
      raise cli.UsageError(f"the TFDS download of CIFAR-10 failed ({type(e).__name__}); "
                           "the built-in sample needs no download (--data_dir=sample)"
                           ) from e
  path = SHARED if choice == "shared" else pathlib.Path(choice)
  if not has_test_split(path):
    raise cli.UsageError(f"no CIFAR-10 class folders at {path} (expected "
                         "test/<class>/<file>)")
  return path


def main(argv):
  del argv
  choice = FLAGS.data_dir or os.environ.get("CDGAN_DATA_DIR", "")
  print(resolve(choice, FLAGS.cache_dir).resolve())


if __name__ == "__main__":
  cli.run(main)
