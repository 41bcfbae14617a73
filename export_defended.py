"""Exports the CD-GAN defended classifier (or the purifier alone) as a SavedModel.

Examples:
  # Purifier + TF-Hub ResNet50-v2 in one SavedModel, ready for TF Serving.
  python export_defended.py --sub_model=runs/sub --super_model=runs/super \
      --classifier=resnet50_v2 --export_dir=exported/cdgan_resnet50_v2
  # The purifier alone (images in, purified images out).
  python export_defended.py --sub_model=runs/sub --super_model=runs/super \
      --export_dir=exported/purifier

Signatures: serving_default (float32 images [N, H, W, 3] in [0, 1], any size) and
serving_bytes (tf.string [N] of encoded JPEG/PNG); the defended model returns logits,
probabilities and classes (ILSVRC 0..999), the purifier returns purified images.
"""

from cdgan_tf import cli  # First: keeps TensorFlow's logs quiet unless --verbose.

from absl import flags  # pylint: disable=g-bad-import-order

from cdgan_tf import classifiers
from cdgan_tf.defenses import cdgan as cdgan_lib
from cdgan_tf.serving import saving

flags.DEFINE_string("sub_model", None, "Sub generator: .keras file or training model_dir.")
flags.DEFINE_string("super_model", None, "Super generator: .keras file or model_dir.")
flags.DEFINE_string("classifier", "", "Classifier to put behind the purifier (registry "
                    "name, TF-Hub handle, SavedModel dir or .keras file); empty: export "
                    "the purifier alone.")
flags.DEFINE_float("center_crop", 1.0, "Central fraction the classifier sees.")
flags.DEFINE_integer("image_size", None, "Purifier working size (default: as trained).")
flags.DEFINE_string("export_dir", None, "Destination folder of the SavedModel.")
flags.DEFINE_bool("overwrite", False, "Replace an existing export_dir.")
flags.mark_flags_as_required(["sub_model", "super_model", "export_dir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv  # cli.run refuses extra arguments.
  purifier = cdgan_lib.CdganPurifier.from_files(FLAGS.sub_model, FLAGS.super_model,
                                                image_size=FLAGS.image_size)
  if FLAGS.classifier:
    classifier = classifiers.load_classifier(FLAGS.classifier,
                                             crop_fraction=FLAGS.center_crop)
    path = saving.export_defended(classifier, purifier, FLAGS.export_dir, FLAGS.overwrite)
    print(f"Exported CD-GAN + {classifier.name} to {path}")
  else:
    path = saving.export_purifier(purifier, FLAGS.export_dir, FLAGS.overwrite)
    print(f"Exported the CD-GAN purifier to {path}")
  print(f"Inspect it with: saved_model_cli show --dir {path} --all")


if __name__ == "__main__":
  cli.run(main)
