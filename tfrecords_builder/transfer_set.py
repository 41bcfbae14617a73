r"""Builds a DAmageNet-style transfer set: attacks a surrogate, writes adversarial PNGs.

  python -m tfrecords_builder.transfer_set --clean_dir=cifar10/test \
      --surrogate=weights/cifar10/vgg_surrogate.keras[,other.keras] --algorithm=mifgsm \
      --eps=16/255 --steps=10 [--step_size=...] [--decay=1.0] [--diversity_prob=0.0] \
      [--labels=val.txt] [--crop=none|damagenet] [--batch_size=32] [--max_images=0] \
      [--seed=0] --output_dir=adv

Writes <output_dir>/<stem>.png (flat folder + --labels) or <output_dir>/<class>/<stem>.png
(class folders), so `python -m tfrecords_builder --adversarial_dir=<output_dir>
--clean_dir=<clean_dir>` pairs them; and attack_manifest.json (settings, counts,
surrogate top-1 before/after, RMSD and L-inf on the 0-255 scale). Rerunning the same
command resumes: finished images are skipped. See cdgan_tf/attacks/transfer_set.py.

--algorithm is the attack algorithm (fgsm, pgd, mifgsm, ...); `evaluate.py --attack`
names threat models (transfer, pgd_defended, bpda, ...), a different thing. The old
spellings `python -m tfrecords_builder.attack` and `--attack=ALGORITHM` still work and
say once that they are deprecated.
"""

import sys

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start(onednn=True)  # Before TensorFlow: quiet logs, oneDNN CPU kernels (cli.py).

from absl import flags  # pylint: disable=g-bad-import-order

from cdgan_tf.attacks import draws
from cdgan_tf.attacks import settings as attack_settings
from cdgan_tf.attacks import transfer_set
from cdgan_tf.common import errors
from cdgan_tf.data import image_files

_CLEAN_DIR = flags.DEFINE_string("clean_dir", None, "Folder of clean images: flat with "
                                 "--labels, else class folders (<dir>/<class>/<file>).")
_LABELS = flags.DEFINE_string(
    "labels", None, "Label file ('<file name> <label>' lines, keyed by stem) for a flat "
    "folder; omit for the class-folder layout (label = sorted class folder index).")
_SURROGATE = flags.DEFINE_list(
    "surrogate", None, "Differentiable surrogate classifier(s): registry name, keras:<name>, "
    "TF-Hub handle, SavedModel dir or .keras/.h5 file; several = an ensemble.")
_ALGORITHM = flags.DEFINE_enum("algorithm", "mifgsm", attack_settings.ATTACKS,
                               "Untargeted attack algorithm.")
_ATTACK = flags.DEFINE_enum("attack", None, attack_settings.ATTACKS, "Deprecated "
                            "spelling of --algorithm (evaluate.py's --attack names threat "
                            "models).")
_EPS = flags.DEFINE_string("eps", "16/255", "Budget: L-inf in [0, 1] (e.g. 16/255), L2 for "
                           "pgd_l2.")
_STEPS = flags.DEFINE_integer("steps", 10, "Iterations (ignored by fgsm).", lower_bound=1)
_STEP_SIZE = flags.DEFINE_string("step_size", None, "Step size (default: mifgsm eps/steps, "
                                 "pgd 2.5*eps/steps); a number or a fraction such as 2/255.")
_DECAY = flags.DEFINE_float("decay", 1.0, "MI-FGSM momentum decay.")
_DIVERSITY_PROB = flags.DEFINE_float("diversity_prob", 0.0, "MI-FGSM input-diversity "
                                     "probability (0: plain MI-FGSM).", lower_bound=0.0,
                                     upper_bound=1.0)
_CROP = flags.DEFINE_enum(
    "crop", "none", image_files.CROPS, "Preparation of the clean image before the attack: "
    "'damagenet' = short side 224 and centre crop 224x224 as DAmageNet; 'none' = as is.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per attack batch.",
                                   lower_bound=1)
_MAX_IMAGES = flags.DEFINE_integer("max_images", 0, "Attack a fixed pseudo-random subset "
                                   "of this many images (0: all).", lower_bound=0)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the attacks' randomness.")
_SEEDING = flags.DEFINE_enum(
    "seeding", "image", draws.SEEDINGS, "image: each image's randomness (PGD "
    "start, input diversity) from its own key, so its bytes do not depend on its batch "
    "mates; batch: one stream per batch (transfer sets made before; a folder whose "
    "sidecar records no seeding is one).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder of the adversarial PNGs and "
                                  "attack_manifest.json (a previous run's folder resumes).")
_LOG_EVERY = flags.DEFINE_integer("log_every", 500, "Log progress every N images.",
                                  lower_bound=1)

_ATTACK_PATH = flags.DEFINE_enum(
    "attack_path", "rebuild", transfer_set.ATTACK_PATHS, "TFLite surrogates: attack "
    "their float rebuild alone (fast) or the interpreter's forward with the rebuild's "
    "gradient (the old, slower path); a folder may be resumed with either.")
_OVERLAP_DEPTH = flags.DEFINE_integer(
    "overlap_depth", 2, "Batches decoded ahead and written behind on threads while the "
    "attack runs; 0: in turn (same bytes either way).", lower_bound=0)

flags.mark_flags_as_required(["clean_dir", "surrogate", "output_dir"])


def algorithm(flag_values=flags.FLAGS) -> str:
  """--algorithm, or the deprecated --attack (saying so in one line on stderr)."""
  if not flag_values["attack"].present:
    return flag_values.algorithm
  if flag_values["algorithm"].present and flag_values.algorithm != flag_values.attack:
    raise errors.UsageError(f"--attack={flag_values.attack} (deprecated) and "
                            f"--algorithm={flag_values.algorithm} disagree: give "
                            "--algorithm alone")
  print(f"note: --attack is deprecated here, use --algorithm={flag_values.attack}",
        file=sys.stderr)
  return flag_values.attack


def main(argv):
  del argv  # cli.run refuses extra arguments.
  transfer_set.generate(
      _CLEAN_DIR.value, _OUTPUT_DIR.value, _SURROGATE.value, labels_path=_LABELS.value,
      attack=algorithm(), eps=_EPS.value, steps=_STEPS.value,
      step_size=_STEP_SIZE.value, decay=_DECAY.value,
      diversity_prob=_DIVERSITY_PROB.value, crop=_CROP.value,
      batch_size=_BATCH_SIZE.value, max_images=_MAX_IMAGES.value, seed=_SEED.value,
      log_every=_LOG_EVERY.value, command={"argv": sys.argv},
      attack_path=_ATTACK_PATH.value, overlap_depth=_OVERLAP_DEPTH.value,
      seeding=_SEEDING.value)


if __name__ == "__main__":
  cli.run(main)
