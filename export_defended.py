r"""Exports the CD-GAN defended classifier (or the purifier alone) as a SavedModel.

Examples:
  # Purifier + TF-Hub ResNet50-v2 in one SavedModel, ready for TF Serving.
  python export_defended.py --sub_model=runs/sub --super_model=runs/super \
      --classifier=resnet50_v2 --export_dir=exported/cdgan_resnet50_v2
  # The purifier alone (images in, purified images out).
  python export_defended.py --sub_model=runs/sub --super_model=runs/super \
      --export_dir=exported/purifier
  # The purifier as TFLite (fixed input size; float32, float16 or dynamic-range int8).
  python export_defended.py --sub_model=runs/sub --super_model=runs/super \
      --export_dir=exported/purifier_tflite --tflite=float16

Signatures: serving_default (float32 images [N, H, W, 3] in [0, 1], any size) and
serving_bytes (tf.string [N] of encoded JPEG/PNG); the defended model returns logits,
probabilities and classes (ILSVRC 0..999), the purifier returns purified images.
With --tflite the purifier alone is written as <export_dir>/purifier_<quantization>.tflite:
float32 [--tflite_batch, S, S, 3] in [0, 1] in (S = --tflite_input_size, default the
working size W) -> float32 [--tflite_batch, W, W, 3] in [0, 1] out.
"""

import os

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

from absl import flags  # pylint: disable=g-bad-import-order

from cdgan_tf import classifiers
from cdgan_tf.common import files
from cdgan_tf.data import image_files
from cdgan_tf.defenses import cdgan as cdgan_lib
from cdgan_tf.defenses import randomized
from cdgan_tf.models import inference
from cdgan_tf.serving import saving
from cdgan_tf.serving import tflite_export

flags.DEFINE_string("sub_model", None, "Sub generator: .keras file or training model_dir.")
flags.DEFINE_string("super_model", None, "Super generator: .keras file or model_dir.")
flags.DEFINE_string("classifier", "", "Classifier to put behind the purifier (registry "
                    "name, TF-Hub handle, SavedModel dir or .keras file); empty: export "
                    "the purifier alone.")
flags.DEFINE_float("center_crop", 1.0, "Central fraction the classifier sees.")
flags.DEFINE_integer("image_size", None, "Purifier working size (default: as trained).")
flags.DEFINE_string("export_dir", None, "Destination folder of the SavedModel.")
flags.DEFINE_bool("overwrite", False, "Replace an existing export_dir.")
flags.DEFINE_integer("max_pixels", image_files.MAX_PIXELS, "The serving_bytes signature "
                     "refuses an image of more decoded pixels (from its header, before "
                     "decoding it), naming its index. 0: no limit.", lower_bound=0)
flags.DEFINE_enum("purifier_dtype", "float32", inference.COMPUTE_DTYPES,
                  "Arithmetic of the exported generators (SavedModel only).")
flags.DEFINE_bool("jit_compile", False, "Compile the generators with XLA in the "
                  "SavedModel (its server then needs XLA).")
flags.DEFINE_enum("tflite", "", ["", *tflite_export.QUANTIZATIONS],
                  "Write the purifier as a .tflite file with these weights instead of a "
                  "SavedModel (int8: dynamic-range quantization).")
flags.DEFINE_integer("tflite_input_size", None, "Fixed input side of the TFLite purifier "
                     "(default: the working size).", lower_bound=1)
flags.DEFINE_integer("tflite_batch", 1, "Fixed batch of the TFLite purifier.",
                     lower_bound=1)
flags.DEFINE_float("purifier_noise", 0.0, "Randomized purification: Gaussian noise of "
                   "this sigma on the [0, 1] images before the chain, drawn anew at every "
                   "call of the SavedModel.", lower_bound=0.0)
flags.DEFINE_bool("purifier_random_resize", False, "Randomized purification: random "
                  "resize-and-pad before the chain.")
flags.DEFINE_integer("seed", 0, "Seed of the randomized purifier's draws (draw i uses "
                     "[seed, i]).")
flags.mark_flags_as_required(["sub_model", "super_model", "export_dir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv  # cli.run refuses extra arguments.
  if FLAGS.tflite and (FLAGS.classifier or FLAGS.purifier_dtype != "float32"
                       or FLAGS.jit_compile):
    raise cli.UsageError("--tflite exports the float purifier alone: drop --classifier, "
                         "--purifier_dtype and --jit_compile")
  # Before loading anything: a read-only or full parent folder fails at once.
  files.check_writable(os.path.dirname(os.path.abspath(FLAGS.export_dir)),
                       "the parent of --export_dir")
  purifier = cdgan_lib.CdganPurifier.from_files(
      FLAGS.sub_model, FLAGS.super_model, image_size=FLAGS.image_size,
      compute_dtype=FLAGS.purifier_dtype, jit_compile=FLAGS.jit_compile)
  if FLAGS.purifier_noise or FLAGS.purifier_random_resize:
    if FLAGS.tflite:
      raise cli.UsageError("--tflite exports the deterministic purifier: drop "
                           "--purifier_noise and --purifier_random_resize")
    purifier = randomized.RandomizedPurifier(purifier, FLAGS.purifier_noise,
                                             FLAGS.purifier_random_resize, seed=FLAGS.seed,
                                             name="cdgan")
  if FLAGS.tflite:
    path = os.path.join(FLAGS.export_dir, f"purifier_{FLAGS.tflite}.tflite")
    tflite_export.export_tflite(purifier, path, FLAGS.tflite, FLAGS.tflite_input_size,
                                FLAGS.tflite_batch, FLAGS.overwrite)
    print(f"Exported the CD-GAN purifier ({FLAGS.tflite}) to {path} "
          f"({os.path.getsize(path) / 1e6:.2f} MB)")
    return
  if FLAGS.classifier:
    classifier = classifiers.load_classifier(FLAGS.classifier,
                                             crop_fraction=FLAGS.center_crop)
    path = saving.export_defended(classifier, purifier, FLAGS.export_dir, FLAGS.overwrite,
                                  FLAGS.max_pixels)
    print(f"Exported CD-GAN + {classifier.name} to {path}")
  else:
    path = saving.export_purifier(purifier, FLAGS.export_dir, FLAGS.overwrite,
                                  FLAGS.max_pixels)
    print(f"Exported the CD-GAN purifier to {path}")
  print(f"Inspect it with: saved_model_cli show --dir {path} --all")


if __name__ == "__main__":
  cli.run(main)
