r"""Builds a CD-GAN training set from a named attack mix, then packs it into TFRecords.

  python -m tfrecords_builder.mix --mix=imagenet|cifar10 --output_dir=DIR \
      [--shared_dir=../shared] [--batch_size=32] [--seed=0] [--max_images=0] \
      [--pack=true] [--val_fraction=0.05] [--log_every=200]

The mixes are declared in cdgan_tf/attacks/mixes.py (attacks, shares, budget ranges,
surrogates, feature network, image sources with the test split left out). Writes
<output_dir>/adv/<source>/<key>.v<k>.png, mix_manifest.json (the mix, counts per
attack, wall time, versions/s) and, once every version exists, <output_dir>/records/
{train,val}-NNNNN-of-NNNNN.tfrecord + manifest.json with the `attack/name` and
`attack/eps` keys. Rerunning the same command resumes where it stopped.
"""

import sys

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start(onednn=True)  # Before TensorFlow: quiet logs, oneDNN CPU kernels (cli.py).

from absl import flags  # pylint: disable=g-bad-import-order
from absl import logging  # pylint: disable=g-bad-import-order

from cdgan_tf.attacks import mix_set
from cdgan_tf.attacks import mixes
from cdgan_tf.attacks import transfer_set
from tfrecords_builder import mix_records

_MIX = flags.DEFINE_enum("mix", None, sorted(mixes.MIXES), "The attack mix "
                         "(cdgan_tf/attacks/mixes.py).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder of the PNGs, sidecar, "
                                  "mix_manifest.json and records/ (a previous run's "
                                  "folder resumes).")
_SHARED_DIR = flags.DEFINE_string("shared_dir", "../shared", "Where '{shared}' in the "
                                  "mix's specs points.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Versions per attack batch.",
                                   lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the draws and the attacks.")
_MAX_IMAGES = flags.DEFINE_integer("max_images", 0, "Only a fixed subset of this many "
                                   "clean images (a smoke run); 0: all.", lower_bound=0)
_PACK = flags.DEFINE_boolean("pack", True, "Pack the records once every version exists.")
_VAL_FRACTION = flags.DEFINE_float("val_fraction", 0.05, "Fraction of clean images (all "
                                   "their versions) in the val split.", lower_bound=0.0)
_LOG_EVERY = flags.DEFINE_integer("log_every", 200, "Log progress every N versions.",
                                  lower_bound=1)
_OVERLAP_DEPTH = flags.DEFINE_integer(
    "overlap_depth", 2, "Batches decoded ahead and written behind on threads while the "
    "attack runs; 0: in turn (same bytes either way).", lower_bound=0)

_ATTACK_PATH = flags.DEFINE_enum(
    "attack_path", "interpreter", transfer_set.ATTACK_PATHS, "TFLite surrogates: the "
    "interpreter's forward with the rebuild's gradient in each step (default: the bytes "
    "of earlier runs) or the float rebuild alone (about 2x faster, other bytes).")

flags.mark_flags_as_required(["mix", "output_dir"])
flags.register_validator("val_fraction", lambda v: v < 1.0, "--val_fraction must be < 1")


def main(argv):
  del argv  # cli.run refuses extra arguments.
  manifest = mix_set.generate(
      mixes.get_mix(_MIX.value), _OUTPUT_DIR.value, shared_dir=_SHARED_DIR.value,
      batch_size=_BATCH_SIZE.value, seed=_SEED.value, max_images=_MAX_IMAGES.value,
      log_every=_LOG_EVERY.value, command={"argv": sys.argv},
      overlap_depth=_OVERLAP_DEPTH.value, attack_path=_ATTACK_PATH.value)
  if not _PACK.value:
    return
  if not manifest["complete"]:
    logging.warning("%d of %d versions missing: not packing; rerun to finish",
                    manifest["counts"]["planned_versions"] - manifest["counts"]["versions"],
                    manifest["counts"]["planned_versions"])
    return
  mix_records.pack(_OUTPUT_DIR.value, val_fraction=_VAL_FRACTION.value, seed=_SEED.value)


if __name__ == "__main__":
  cli.run(main)
