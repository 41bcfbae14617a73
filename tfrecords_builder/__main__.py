r"""Builds paired TFRecords for CD-GAN training from two image folders.

  python -m tfrecords_builder --adversarial_dir=DAmageNet \
      --clean_dir=ILSVRC2012_img_val --labels=val.txt --crop=damagenet \
      --output_dir=records [--num_shards=N] [--val_fraction=0.05] [--workers=2] [--seed=0]

Without --labels both folders use the class-folder layout (<dir>/<class>/<file>).
Writes train-NNNNN-of-NNNNN.tfrecord, val-NNNNN-of-NNNNN.tfrecord and manifest.json
(counts, shard checksums, every skipped or converted input); see builder.py.
"""

import sys

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

from absl import flags  # pylint: disable=g-bad-import-order

from cdgan_tf.data import image_files
from tfrecords_builder import builder
from tfrecords_builder import pairs

_ADVERSARIAL_DIR = flags.DEFINE_string("adversarial_dir", None, "Folder of adversarial images.")
_CLEAN_DIR = flags.DEFINE_string("clean_dir", None, "Folder of the clean originals.")
_LABELS = flags.DEFINE_string(
    "labels", None, "Label file ('<file name> <label>' lines, keyed by stem) for flat "
    "folders paired by stem; omit for the class-folder layout.")
_CROP = flags.DEFINE_enum(
    "crop", "none", image_files.CROPS, "How to prepare the clean side: 'damagenet' = short "
    "side to 224 and centre crop 224x224 exactly as DAmageNet's tooling; 'none' = as is.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for shards and manifest.json.")
_NUM_SHARDS = flags.DEFINE_integer(
    "num_shards", None, "Train shards (default: one per ~1,000 examples).", lower_bound=1)
_VAL_FRACTION = flags.DEFINE_float(
    "val_fraction", 0.05, "Fraction of pairs in the val split (stable hash of the key).",
    lower_bound=0.0)
_WORKERS = flags.DEFINE_integer("workers", 2, "Decoding/encoding processes.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the train/val split hash.")
_OVERWRITE = flags.DEFINE_boolean(
    "overwrite", False, "Replace the records and manifest of a non-empty output_dir.")
_LOG_EVERY = flags.DEFINE_integer("log_every", 1000, "Log progress every N pairs.",
                                  lower_bound=1)
_SIZE_CHECK = flags.DEFINE_enum(
    "size_check", "warn", pairs.SIZE_ACTIONS, "What to do with a pair whose sizes differ "
    "by more than --max_size_ratio or that has a side under --min_size: 'warn' (keep it, "
    "record a warning in manifest.json) or 'skip'.")
_MAX_SIZE_RATIO = flags.DEFINE_float(
    "max_size_ratio", pairs.SizeCheck.max_size_ratio, "Largest ratio between a side of the "
    "adversarial image and the same side of its clean image.", lower_bound=1.0)
_HOLDOUT = flags.DEFINE_integer(
    "holdout_subset", 0, "Leave out the N pairs that evaluate.py --max_images=N evaluates "
    "on the same folders (a fixed hash-chosen test split); 0: keep all.", lower_bound=0)
_MIN_SIZE = flags.DEFINE_integer("min_size", pairs.SizeCheck.min_size, "Smallest image "
                                 "side in pixels.", lower_bound=1)

flags.mark_flags_as_required(["adversarial_dir", "clean_dir", "output_dir"])
flags.register_validator("val_fraction", lambda v: v < 1.0, "--val_fraction must be < 1")


def main(argv):
  del argv  # cli.run refuses extra arguments.
  builder.build(
      _ADVERSARIAL_DIR.value, _CLEAN_DIR.value, _OUTPUT_DIR.value, labels_path=_LABELS.value,
      crop=_CROP.value, num_shards=_NUM_SHARDS.value, val_fraction=_VAL_FRACTION.value,
      workers=_WORKERS.value, seed=_SEED.value, overwrite=_OVERWRITE.value,
      log_every=_LOG_EVERY.value, command={"argv": sys.argv},
      size_check=pairs.SizeCheck(_MAX_SIZE_RATIO.value, _MIN_SIZE.value, _SIZE_CHECK.value),
      holdout_subset=_HOLDOUT.value)


if __name__ == "__main__":
  cli.run(main)
