"""Speed of the float TFLite rebuild next to the interpreter, side by side in one run.

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

import json
import os
import pathlib
import statistics
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from ai_edge_litert import interpreter as litert
from cdgan_tf.classifiers import tflite_rebuild

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
flags.DEFINE_string("shared_dir", os.environ.get("CDGAN_SHARED_DIR",
                                                 str(REPO_ROOT.parent / "shared")),
                    "The shared data folder (models/tflite).")
flags.DEFINE_list("models", [], "Model stems under models/tflite (default: all).")
flags.DEFINE_integer("batch_size", 8, "Images per measured batch.")
flags.DEFINE_integer("repeats", 20, "Timed rounds (median reported).")
flags.DEFINE_integer("warmup", 2, "Untimed batches before each measurement.")
flags.DEFINE_integer("num_threads", 2, "TFLite interpreter threads.")
flags.DEFINE_string("output_json", "", "Optional file for the measured numbers.")
FLAGS = flags.FLAGS


def median_ms_per_image(runs: dict) -> dict:
  """{name: median ms per image} of each run() over --repeats rounds; the runs take
  turns within each round, so a load change on the machine hits them alike."""
  for run in runs.values():
    for _ in range(FLAGS.warmup):
      run()
  times = {name: [] for name in runs}
  for _ in range(FLAGS.repeats):
    for name, run in runs.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  return {name: 1000.0 * statistics.median(t) / FLAGS.batch_size
          for name, t in times.items()}


def measure(path: pathlib.Path) -> dict:
  model = tflite_rebuild.TFLiteRebuild(path)
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (FLAGS.batch_size, *model.input_size, 3), dtype=np.uint8)

  interpreter = litert.Interpreter(model_path=str(path), num_threads=FLAGS.num_threads)
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
  if not paths:
    raise SystemExit(f"no .tflite files in {model_dir} (set --shared_dir)")
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
  if FLAGS.output_json:
    pathlib.Path(FLAGS.output_json).write_text(json.dumps(
        {"batch_size": FLAGS.batch_size, "repeats": FLAGS.repeats,
         "num_threads": FLAGS.num_threads, "cpu_count": os.cpu_count(),
         "tensorflow": tf.__version__, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
  app.run(main)
