r"""Speed of the float TFLite rebuild next to the interpreter, side by side in one run.

For each TFLite model in <shared>/models/tflite this measures, on the same random uint8
batch:

  interpreter   the real interpreter (uint8, default XNNPACK delegate, --num_threads),
                one image per invoke, as the models fix batch 1
  forward       `TFLiteRebuild(path)(images)` on the whole batch (float mode; its
                graph runs as a tf.function)
  fwd+bwd       a tf.function computing the gradient of a scalar of the outputs with
                respect to the input images (what an attack step costs)

and prints ms/image of each and their ratios to the interpreter. Every measurement is
warmed up (tracing excluded) and reported as the median over --repeats rounds in which
the three take turns, so the ratios hold on a noisy machine.

  python benchmarks/tflite_rebuild.py [--batch_size=8 --repeats=20 \
      --output_json=/tmp/tflite_rebuild.json]
"""

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

import os  # pylint: disable=g-bad-import-order
import pathlib

from absl import flags
import numpy as np
import tensorflow as tf

import benchlib
from cdgan_tf.classifiers import tflite_rebuild
from cdgan_tf.classifiers import tflite_runner

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
flags.DEFINE_string("shared_dir", os.environ.get("CDGAN_SHARED_DIR",
                                                 str(REPO_ROOT.parent / "shared")),
                    "The shared data folder (models/tflite).")
flags.DEFINE_list("models", [], "Model stems under models/tflite (default: all).")
flags.DEFINE_integer("batch_size", 8, "Images per measured batch.")
flags.DEFINE_integer("repeats", 20, "Timed rounds (median reported).")
flags.DEFINE_integer("warmup", 2, "Untimed batches before each measurement.")
flags.DEFINE_integer("num_threads", 2, "TFLite interpreter threads.")
flags.DEFINE_string("output_json", "", "Write the figures to this JSON file.")
FLAGS = flags.FLAGS


def median_ms_per_image(runs: dict) -> dict:
  """{name: median ms per image} of each run() over --repeats interleaved rounds."""
  seconds = benchlib.interleaved_seconds(runs, FLAGS.repeats, FLAGS.warmup)
  return {name: 1000.0 * t["median"] / FLAGS.batch_size for name, t in seconds.items()}


def measure(path: pathlib.Path) -> dict:
  model = tflite_rebuild.TFLiteRebuild(path)
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (FLAGS.batch_size, *model.input_size, 3), dtype=np.uint8)

  interpreter_cls, _ = tflite_runner.interpreter_api()
  interpreter = interpreter_cls(model_path=str(path), num_threads=FLAGS.num_threads)
  interpreter.allocate_tensors()
  inp = interpreter.get_input_details()[0]

  def interpret():
    for image in pixels:
      interpreter.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
      interpreter.invoke()

  images = tf.constant(pixels.astype(np.float32) / 255.0)
  weights = tf.constant(rng.normal(size=model.num_outputs), tf.float32)

  @tf.function(input_signature=[tf.TensorSpec(images.shape, tf.float32)])
  def gradient(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(model(x) * weights)
    return tape.gradient(loss, x)

  row = {"model": path.stem, "input_size": list(model.input_size)}
  row.update(median_ms_per_image({
      "interpreter": interpret, "forward": lambda: model(images).numpy(),
      "forward_backward": lambda: gradient(images).numpy()}))
  row["forward_ratio"] = row["forward"] / row["interpreter"]
  row["forward_backward_ratio"] = row["forward_backward"] / row["interpreter"]
  return row


def main(argv):
  del argv
  model_dir = pathlib.Path(FLAGS.shared_dir) / "models/tflite"
  paths = ([model_dir / f"{m}.tflite" for m in FLAGS.models] if FLAGS.models
           else sorted(model_dir.glob("*.tflite")))
  missing = [str(p) for p in paths if not p.exists()]
  if missing and model_dir.is_dir():
    raise cli.UsageError(f"--models: no such file {', '.join(missing)}")
  if not paths or missing:  # No shared data on this machine: nothing to measure.
    reason = f"no .tflite files in {model_dir} (set --shared_dir)"
    print(f"tflite_rebuild: skipped, {reason}")
    benchlib.write_results(FLAGS.output_json, "tflite_rebuild",
                           {"shared_dir": FLAGS.shared_dir}, {"skipped": reason})
    return
  rows = []
  for path in paths:
    rows.append(measure(path))
    print(f"{path.stem}: done", flush=True)
  print(f"\nbatch={FLAGS.batch_size} repeats={FLAGS.repeats} interpreter threads="
        f"{FLAGS.num_threads} (CPU threads: {os.cpu_count()}); ms/image, median")
  print(f"{'model':48} {'size':>4} {'interp':>8} {'forward':>8} {'fwd+bwd':>8} "
        f"{'fwd/int':>8} {'f+b/int':>8}")
  for row in rows:
    print(f"{row['model']:48} {row['input_size'][0]:4d} {row['interpreter']:8.2f} "
          f"{row['forward']:8.2f} {row['forward_backward']:8.2f} "
          f"{row['forward_ratio']:8.2f} {row['forward_backward_ratio']:8.2f}")
  benchlib.write_results(FLAGS.output_json, "tflite_rebuild", dict(
      benchlib.flag_values(FLAGS, ["models", "batch_size", "repeats", "warmup",
                                   "num_threads"]), shared_dir=FLAGS.shared_dir), rows)


if __name__ == "__main__":
  cli.run(main)
