r"""Writes a noisy copy of an image folder: the stand-in 'attack' of the training check.

Before real attack sets exist, the training side is checked on pairs (clean image, the
same image plus Gaussian noise): a generator that learns anything must beat plain
bicubic resizing of the noisy input at restoring the clean image.

  python experiments/make_noisy_copy.py --src=../shared/datasets/cifar10/train \
      --dst=/tmp/noisy/train --clean_dst=/tmp/noisy/clean --sigma=8 --per_class=500

The copy keeps the class-folder layout and file stems and is written as PNG
(lossless), so `python -m tfrecords_builder` pairs it with the clean images;
--clean_dst links the same subset of clean originals into a folder of their own.
"""

import os

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image

flags.DEFINE_string("src", None, "Class-folder image root (<src>/<class>/<file>).")
flags.DEFINE_string("dst", None, "Output root; same layout, PNG files.")
flags.DEFINE_float("sigma", 8.0, "Noise standard deviation on the 0-255 scale.")
flags.DEFINE_integer("per_class", 0, "Images per class, first in sorted order (0: all).")
flags.DEFINE_integer("seed", 0, "Noise seed.")
flags.DEFINE_string("clean_dst", "", "Optional folder that gets symbolic links to the same "
                    "subset of clean originals (so the builder sees exactly the pairs).")
flags.mark_flags_as_required(["src", "dst"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  rng = np.random.default_rng(FLAGS.seed)
  classes = sorted(d for d in os.listdir(FLAGS.src) if os.path.isdir(os.path.join(FLAGS.src, d)))
  if not classes:
    raise app.UsageError(f"--src={FLAGS.src} has no class folders")
  written = 0
  for name in classes:
    files = sorted(os.listdir(os.path.join(FLAGS.src, name)))
    if FLAGS.per_class:
      files = files[:FLAGS.per_class]
    os.makedirs(os.path.join(FLAGS.dst, name), exist_ok=True)
    for file_name in files:
      with Image.open(os.path.join(FLAGS.src, name, file_name)) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
      noisy = np.clip(np.round(pixels + rng.normal(0.0, FLAGS.sigma, pixels.shape)), 0, 255)
      stem = os.path.splitext(file_name)[0]
      Image.fromarray(noisy.astype(np.uint8)).save(os.path.join(FLAGS.dst, name, stem + ".png"))
      if FLAGS.clean_dst:
        link = os.path.join(FLAGS.clean_dst, name, file_name)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.lexists(link):
          os.symlink(os.path.abspath(os.path.join(FLAGS.src, name, file_name)), link)
      written += 1
  logging.info("wrote %d noisy images (sigma %.1f/255) under %s", written, FLAGS.sigma,
               FLAGS.dst)


if __name__ == "__main__":
  app.run(main)
