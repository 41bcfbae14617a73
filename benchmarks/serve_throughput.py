r"""Serving throughput: the exported defended SavedModel, the same chain in-process, and
the classifier alone, measured side by side in one run.

  exported      tf.saved_model.load(export_dir).signatures["serving_default"]
  in-process    the same DefendedModule called directly (no save / load)
  classifier    the undefended classifier (what the defense adds to the cost)

Each is warmed up, then timed on the same batch in --batches rounds in which the three
take turns (`benchlib.interleaved_seconds`, medians), so the ratios (exported /
in-process, defended / classifier) hold on a noisy machine.

  python benchmarks/serve_throughput.py [--image_size=64 --scale=4 --batch_size=8 \
      --num_res_blocks=16 --filters=64 --classifier=PATH \
      --output_json=results/bench/serve_throughput.json]

Without --classifier a small Keras CNN with the ImageNet-style 1000-way output is
built, so the script runs offline; pass a TF-Hub handle, SavedModel or .keras file to
measure a real one.
"""

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

import os  # pylint: disable=g-bad-import-order
import tempfile

from absl import flags
import keras
import tensorflow as tf

import benchlib
from cdgan_tf import classifiers
from cdgan_tf.defenses import cdgan
from cdgan_tf.serving import modules
from cdgan_tf.serving import saving
from cdgan_tf.models import generators

flags.DEFINE_integer("image_size", 64, "Purifier working size (paper: 256).")
flags.DEFINE_integer("scale", 4, "Scale factor (paper: 4).")
flags.DEFINE_integer("batch_size", 8, "Images per call.")
flags.DEFINE_integer("batches", 10, "Timed rounds (medians reported).", lower_bound=1)
flags.DEFINE_integer("num_res_blocks", 16, "Generator residual blocks.")
flags.DEFINE_integer("filters", 64, "Generator filters.")
flags.DEFINE_string("classifier", "", "Classifier spec (default: a small built-in CNN).")
flags.DEFINE_string("output_json", "", "Write the figures to this JSON file.")
FLAGS = flags.FLAGS


def _default_classifier(path: str) -> str:
  inputs = keras.Input((FLAGS.image_size, FLAGS.image_size, 3))
  x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(inputs)
  x = keras.layers.Conv2D(64, 3, strides=2, activation="relu")(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  keras.Model(inputs, keras.layers.Dense(1000)(x)).save(path)
  return path


def main(argv):
  del argv
  keras.utils.set_random_seed(0)
  with tempfile.TemporaryDirectory() as tmp:
    spec = FLAGS.classifier or _default_classifier(os.path.join(tmp, "cnn.keras"))
    classifier = classifiers.load_classifier(spec)
    purifier = cdgan.CdganPurifier(
        generators.build_sub_generator(FLAGS.scale, FLAGS.num_res_blocks, FLAGS.filters),
        generators.build_super_generator(FLAGS.scale, FLAGS.num_res_blocks, FLAGS.filters),
        image_size=FLAGS.image_size, scale=FLAGS.scale)
    module = modules.DefendedModule(classifier, purifier)
    export_dir = saving.save_module(module, os.path.join(tmp, "defended"))
    serving = tf.saved_model.load(export_dir).signatures["serving_default"]
    images = tf.random.uniform((FLAGS.batch_size, FLAGS.image_size, FLAGS.image_size, 3),
                               seed=0)
    undefended = tf.function(classifier.__call__)
    seconds = benchlib.interleaved_seconds({
        "exported SavedModel": lambda: serving(images=images)["logits"].numpy(),
        "in-process chain": lambda: module.serve_images(images)["logits"].numpy(),
        "classifier alone": lambda: undefended(images).numpy(),
    }, FLAGS.batches)
    rates = {name: FLAGS.batch_size / t["median"] for name, t in seconds.items()}
  name = FLAGS.classifier or "built-in CNN"
  print(f"\nimage_size={FLAGS.image_size} scale={FLAGS.scale} batch={FLAGS.batch_size} "
        f"blocks={FLAGS.num_res_blocks} filters={FLAGS.filters} classifier={name}")
  for name, rate in rates.items():
    print(f"{name:22s} {rate:10.1f} images/s")
  print(f"exported / in-process   {rates['exported SavedModel'] / rates['in-process chain']:.3f}")
  print(f"defended / classifier   {rates['in-process chain'] / rates['classifier alone']:.4f}"
        f"  (the defense costs {rates['classifier alone'] / rates['in-process chain']:.1f}x)")
  benchlib.write_results(FLAGS.output_json, "serve_throughput", dict(
      benchlib.flag_values(FLAGS, ["image_size", "scale", "batch_size", "batches",
                                   "num_res_blocks", "filters"]),
      classifier=FLAGS.classifier or "built-in CNN"), {
          "images_per_sec": rates, "seconds_per_batch": seconds,
          "exported_over_in_process": rates["exported SavedModel"] / rates["in-process chain"],
          "defended_over_classifier": rates["in-process chain"] / rates["classifier alone"]})


if __name__ == "__main__":
  cli.run(main)
