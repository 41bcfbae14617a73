r"""The demo's sample grid: a spread of classes, successes and failures, class names.

`evaluate.py` draws its grid from the first images of the first batch (in the demo: one
class). This draws it from every pair: the defended classifier runs on all adversarial
images, then `evaluation.samples.spread_rows` picks one class after another, mixing
images CD-GAN gets right and wrong; captions name the classes (class folder names).

Example (what `make demo` runs after evaluate.py):
  python -m experiments.cifar10.demo_samples --clean_dir=experiments/cifar10/sample/test \
      --adversarial_dir=results/demo/adversarial --classifier=weights/cifar10/resnet_v2.keras \
      --purifier=cifar10 --output=results/demo/samples.png
"""

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

from absl import flags  # pylint: disable=g-bad-import-order
import numpy as np

from cdgan_tf import classifiers as classifiers_lib
from cdgan_tf import pretrained
from cdgan_tf.data import folders
from cdgan_tf.data import streams
from cdgan_tf.evaluation import reports
from cdgan_tf.evaluation import samples
from cdgan_tf.evaluation.evaluator import predict

flags.DEFINE_string("clean_dir", None, "Clean images in class folders.", required=True)
flags.DEFINE_string("adversarial_dir", None, "Their adversarial images (same layout).",
                    required=True)
flags.DEFINE_string("classifier", None, "The classifier behind the purifier.", required=True)
flags.DEFINE_string("purifier", "cifar10", "What cdgan_tf.load_purifier takes: a preset "
                    "name, a folder with sub/ and super/, or an exported purifier.")
flags.DEFINE_integer("num_samples", 8, "Rows of the grid.", lower_bound=1)
flags.DEFINE_integer("max_images", 0, "The subset evaluate.py used (0: all).", lower_bound=0)
flags.DEFINE_integer("batch_size", 100, "Images per batch.", lower_bound=1)
flags.DEFINE_string("output", None, "The PNG to write.", required=True)
FLAGS = flags.FLAGS


def main(argv):
  del argv
  stream = streams.FolderStream(FLAGS.clean_dir, FLAGS.adversarial_dir,
                                batch_size=FLAGS.batch_size, max_images=FLAGS.max_images)
  classifier = classifiers_lib.load_classifier(FLAGS.classifier)
  purifier = pretrained.load_purifier(FLAGS.purifier)
  batches = list(stream)
  correct = np.concatenate([predict(classifier, purifier(b.adversarial)) == b.labels
                            for b in batches])
  batch = samples.join_batches(batches)
  rows = samples.spread_rows(batch.labels, correct, FLAGS.num_samples)
  columns, titles, captions = samples.sample_columns(
      samples.take_rows(batch, rows), purifier, classifier, len(rows),
      class_names=folders.class_names(FLAGS.clean_dir))
  reports.sample_grid(columns, titles, captions, FLAGS.output)
  print(f"Wrote {FLAGS.output}: {len(rows)} images of "
        f"{len(set(int(label) for label in batch.labels[rows]))} classes, "
        f"{int(correct[rows].sum())} right and {len(rows) - int(correct[rows].sum())} wrong "
        "behind CD-GAN")


if __name__ == "__main__":
  cli.run(main)
