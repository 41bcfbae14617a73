r"""The purifier as TFLite (float32, float16, dynamic-range int8): size, speed, pixels.

The chained purifier of --sub_model / --super_model (default: the shipped CIFAR-10
CD-GAN, weights/cifar10/cdgan) is converted by `cdgan_tf.serving.tflite_export` at its
working size and batch --batch_size, and each .tflite is run by the TFLite interpreter
(ai-edge-litert, else tf.lite; --num_threads) on real images (the built-in CIFAR-10
sample, else random pixels). Reported per quantization: file size, images/s (median of
--repeats rounds in which all variants and the Keras purifier take turns), and the
largest and mean absolute pixel difference from the Keras purifier (float32, [0, 1]).

  python benchmarks/tflite_purifier.py [--batch_size=8 --repeats=10 \
      --output_json=results/bench/tflite_purifier.json]
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
from cdgan_tf import image_ops
from cdgan_tf.defenses import cdgan
from cdgan_tf.serving import tflite_export

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
WEIGHTS = REPO_ROOT / "weights/cifar10/cdgan"
SAMPLE = REPO_ROOT / "experiments/cifar10/sample/test"
flags.DEFINE_string("sub_model", str(WEIGHTS / "sub"), "Sub generator.")
flags.DEFINE_string("super_model", str(WEIGHTS / "super"), "Super generator.")
flags.DEFINE_list("quantizations", list(tflite_export.QUANTIZATIONS), "TFLite variants.")
flags.DEFINE_integer("batch_size", 8, "Images per call (the .tflite's fixed batch).",
                     lower_bound=1)
flags.DEFINE_integer("repeats", 10, "Timed rounds (medians reported).", lower_bound=1)
flags.DEFINE_integer("num_threads", 2, "TFLite interpreter threads.", lower_bound=1)
flags.DEFINE_string("output_json", "", "Write the figures to this JSON file.")
FLAGS = flags.FLAGS


def _images(size: int) -> tuple:
  files = sorted(p for p in SAMPLE.glob("*/*") if p.suffix.lower() in (".png", ".jpg"))
  files = files[::max(1, len(files) // max(FLAGS.batch_size, 1))][:FLAGS.batch_size]
  if len(files) < FLAGS.batch_size:
    rng = np.random.default_rng(0)
    return rng.random((FLAGS.batch_size, size, size, 3), np.float32), "random pixels"
  images = [image_ops.decode_image(tf.io.read_file(str(f))) for f in files]
  batch = image_ops.resize(tf.stack(images), size).numpy()
  return batch, f"{len(files)} images of {SAMPLE.relative_to(REPO_ROOT)}"


def main(argv):
  del argv
  bad = [q for q in FLAGS.quantizations if q not in tflite_export.QUANTIZATIONS]
  if bad:
    raise cli.UsageError(f"--quantizations: unknown {bad} (choose from "
                         f"{', '.join(tflite_export.QUANTIZATIONS)})")
  purifier = cdgan.CdganPurifier.from_files(FLAGS.sub_model, FLAGS.super_model)
  size = purifier.image_size
  images, source = _images(size)
  keras_fn = tf.function(purifier.__call__)
  reference = keras_fn(tf.constant(images)).numpy()
  runners, rows = {}, []
  for quantization in FLAGS.quantizations:
    content = tflite_export.convert(purifier, quantization, batch_size=FLAGS.batch_size)
    runner = tflite_export.TFLitePurifierRunner(content, num_threads=FLAGS.num_threads)
    diff = np.abs(runner(images) - reference)
    runners[quantization] = runner
    rows.append({"quantization": quantization, "bytes": len(content),
                 "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())})
  runs = {"keras": lambda: keras_fn(tf.constant(images)).numpy()}
  runs.update({q: (lambda r=r: r(images)) for q, r in runners.items()})
  seconds = benchlib.interleaved_seconds(runs, FLAGS.repeats)
  for row in rows:
    row["images_per_sec"] = FLAGS.batch_size / seconds[row["quantization"]]["median"]
    row["speed_vs_keras"] = seconds["keras"]["median"] / seconds[row["quantization"]]["median"]
  keras_rate = FLAGS.batch_size / seconds["keras"]["median"]
  print(f"\nCD-GAN purifier {size} -> {size // purifier.scale} -> {size}, batch "
        f"{FLAGS.batch_size}, {FLAGS.num_threads} interpreter threads (CPU threads: "
        f"{os.cpu_count()}); inputs: {source}")
  print(f"Keras (TensorFlow) purifier: {keras_rate:.1f} images/s")
  print(f"{'tflite':8} {'MB':>6} {'images/s':>9} {'vs Keras':>9} {'max diff':>9} "
        f"{'mean diff':>10}")
  for row in rows:
    print(f"{row['quantization']:8} {row['bytes'] / 1e6:6.2f} {row['images_per_sec']:9.1f} "
          f"{row['speed_vs_keras']:9.2f} {row['max_abs_diff']:9.4f} {row['mean_abs_diff']:10.5f}")
  benchlib.write_results(FLAGS.output_json, "tflite_purifier", dict(
      benchlib.flag_values(FLAGS, ["sub_model", "super_model", "quantizations",
                                   "batch_size", "repeats", "num_threads"]),
      inputs=source), {"keras_images_per_sec": keras_rate, "variants": rows,
                       "seconds": seconds})


if __name__ == "__main__":
  cli.run(main)
