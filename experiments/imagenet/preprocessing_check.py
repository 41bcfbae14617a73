r"""Top-1 of the real TFLite ImageNet models on the real ILSVRC2012 val sample.

The most important correctness check of the classifier adapters: a wrong value range,
an off-by-one label mapping or a bad resize costs tens of points, so each real model is
measured under a few candidate preprocessings and compared with its published accuracy
(TF-Lite hosted-models table: MobileNet-v2 1.0 224 quant 70.8 %, v1 0.75 192 quant
66.1 %, v1 0.5 160 quant 57.2 %, v1 0.25 128 quant 39.5 %; measured there on the full
50,000-image val set with a central crop of 87.5 % and a bilinear resize).

Every candidate is "optional central crop + image_ops.resize into the input size", i.e.
exactly what `cdgan_tf.classifiers.Classifier` does with its crop_fraction and
resize_method attributes, so the chosen one can be used by the defense unchanged.

Measured (1,300 images, value_range uint8; top-1 %):
  model                 published  resize_bicubic  resize_bilinear  crop875_bicubic  crop875_bilinear
  v2 1.0 224 quant        70.8         79.2            78.2             80.5             80.2
  v1 0.75 192 quant       66.1         75.7            75.2             77.6             77.5
  v1 0.5 160 quant        57.2         69.2            68.2             73.3             72.4
  v1 0.25 128 quant       39.5         51.9            49.2             56.0             53.5
The sample is easier than the full val set (every model and preprocessing is 9-17 points
above its published number), so absolute agreement is not the criterion; the ranking of
the models matches. Paired over the four models, the 87.5 % central crop wins 352 images
and loses 204 against no crop (sign test p < 1e-9) and bicubic beats bilinear (crop:
127 vs 77, p < 1e-3); feeding quantized [-1, 1] reals instead of raw uint8 pixels changes
top-1 by at most 0.5 points.

Usage (about 5 minutes on one shared core for 1,300 images x 4 models x 4 candidates):
  .venv/bin/python experiments/imagenet_tflite_check.py
  .venv/bin/python experiments/imagenet_tflite_check.py --models=mobilenet_v2_1.0_224_quant \
      --preprocessings=resize_bicubic --value_range=-1_1 --limit=100
"""

import json
import math
import os
import pathlib
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from cdgan_tf import classifiers
from cdgan_tf import image_ops

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

# name -> (published top-1 %, from the TF-Lite hosted-models table)
PUBLISHED_TOP1 = {
    "mobilenet_v2_1.0_224_quant": 70.8,
    "mobilenet_v1_0.75_192_quant": 66.1,
    "mobilenet_v1_0.5_160_quant": 57.2,
    "mobilenet_v1_0.25_128_quant": 39.5,
}
# name -> (crop_fraction, resize_method)
PREPROCESSINGS = {
    "resize_bicubic": (1.0, "bicubic"),
    "resize_bilinear": (1.0, "bilinear"),
    "crop875_bicubic": (0.875, "bicubic"),
    "crop875_bilinear": (0.875, "bilinear"),
}

flags.DEFINE_string("shared_dir", os.environ.get("CDGAN_SHARED_DIR",
                                                 str(REPO_ROOT.parent / "shared")),
                    "The shared data folder (datasets/, models/).")
flags.DEFINE_list("models", list(PUBLISHED_TOP1), "TFLite model stems under "
                  "models/tflite.")
flags.DEFINE_list("preprocessings", list(PREPROCESSINGS),
                  f"Candidates among {', '.join(PREPROCESSINGS)}.")
flags.DEFINE_string("value_range", None, "Override of the adapters' value_range "
                    "(default: the model's own, 'uint8' for these models).")
flags.DEFINE_integer("limit", 0, "Use only the first N images in sorted order (0: all).")
flags.DEFINE_integer("batch_size", 100, "Images per adapter call.")
flags.DEFINE_integer("num_threads", 1, "TFLite interpreter threads.")
flags.DEFINE_string("output_json", "", "Optional file for the measured numbers.")

FLAGS = flags.FLAGS


def check_label_files(shared: pathlib.Path) -> None:
  """The models' 1001 labels must be background + synset_words in the same order."""
  model_labels = (shared / "models/tflite/imagenet_labels.txt").read_text().splitlines()
  synsets = (shared / "datasets/imagenet_val_sample/synset_words.txt").read_text()
  names = [line.split(" ", 1)[1] for line in synsets.splitlines()]
  if model_labels[0] != "background" or model_labels[1:] != names:
    raise SystemExit("imagenet_labels.txt is not 'background' + synset_words.txt order")


def load_sample(shared: pathlib.Path, limit: int):
  """Returns (uint8 images [N, H, W, 3], int64 labels [N], file names)."""
  folder = shared / "datasets/imagenet_val_sample"
  if not (folder / "val.txt").is_file():
    raise SystemExit(f"{folder}/val.txt not found (set --shared_dir)")
  truth = dict(line.split() for line in (folder / "val.txt").read_text().splitlines())
  files = sorted(p.name for p in folder.glob("*.JPEG"))
  if limit:
    files = files[:limit]
  images = np.stack([tf.io.decode_jpeg(tf.io.read_file(str(folder / f)),
                                       channels=3).numpy() for f in files])
  labels = np.array([int(truth[f]) for f in files], np.int64)
  return images, labels, files


def top1(classifier: classifiers.Classifier, images: np.ndarray, labels: np.ndarray,
         batch_size: int) -> np.ndarray:
  """Per-image correctness (bool [N])."""
  correct = []
  for start in range(0, len(images), batch_size):
    batch = tf.image.convert_image_dtype(images[start:start + batch_size], tf.float32)
    correct.append(classifier.predict(batch).numpy() == labels[start:start + batch_size])
  return np.concatenate(correct)


def _mask(entry) -> np.ndarray:
  bits = np.unpackbits(np.frombuffer(bytes.fromhex(entry["correct_mask"]), np.uint8))
  return bits[:entry["n"]].astype(bool)


def sign_test_p(wins: int, losses: int) -> float:
  """Two-sided exact sign test on the images where two candidates disagree."""
  n, k = wins + losses, min(wins, losses)
  return min(1.0, 2.0 * sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n)


def print_paired_comparisons(results) -> None:
  """Crop vs no crop and bicubic vs bilinear, on the same images, pooled over models."""
  pairs = [("crop875_bicubic", "resize_bicubic"), ("crop875_bilinear", "resize_bilinear"),
           ("resize_bicubic", "resize_bilinear"), ("crop875_bicubic", "crop875_bilinear")]
  for a, b in pairs:
    wins = losses = 0
    for row in results.values():
      if a in row and b in row:
        mask_a, mask_b = _mask(row[a]), _mask(row[b])
        wins += int(np.sum(mask_a & ~mask_b))
        losses += int(np.sum(~mask_a & mask_b))
    if wins + losses:
      print(f"{a} vs {b}: right only with {a} {wins}, only with {b} {losses}, "
            f"sign test p={sign_test_p(wins, losses):.2g}")


def main(argv):
  del argv
  shared = pathlib.Path(FLAGS.shared_dir)
  check_label_files(shared)
  images, labels, files = load_sample(shared, FLAGS.limit)
  print(f"{len(files)} images {images.shape[1:]} of {len(set(labels))} classes; "
        f"default resize {image_ops.RESIZE_METHOD}")
  results = {}
  for model in FLAGS.models:
    path = shared / "models/tflite" / f"{model}.tflite"
    for prep in FLAGS.preprocessings:
      crop, method = PREPROCESSINGS[prep]
      classifier = classifiers.load_classifier(
          str(path), value_range=FLAGS.value_range, crop_fraction=crop,
          resize_method=method, num_threads=FLAGS.num_threads)
      start = time.time()
      correct = top1(classifier, images, labels, FLAGS.batch_size)
      accuracy = 100.0 * correct.mean()
      stderr = 100.0 * math.sqrt(correct.mean() * (1 - correct.mean()) / len(correct))
      results.setdefault(model, {})[prep] = {
          "top1": accuracy, "stderr": stderr, "correct": int(correct.sum()),
          "n": len(correct), "value_range": classifier.value_range,
          "input_size": classifier.input_size,
          "correct_mask": np.packbits(correct).tobytes().hex()}
      print(f"{model:30s} {prep:18s} {classifier.value_range:5s} top-1 "
            f"{accuracy:5.1f} % +- {stderr:.1f} ({correct.sum()}/{len(correct)}) "
            f"[{time.time() - start:.0f} s]", flush=True)

  print_paired_comparisons(results)
  print("\n| model | published |", " | ".join(FLAGS.preprocessings), "|")
  print("|---|---|" + "---|" * len(FLAGS.preprocessings))
  for model, row in results.items():
    cells = " | ".join(f"{row[p]['top1']:.1f}" for p in FLAGS.preprocessings)
    print(f"| {model} | {PUBLISHED_TOP1.get(model, float('nan')):.1f} | {cells} |")
  if FLAGS.output_json:
    pathlib.Path(FLAGS.output_json).write_text(json.dumps(
        {"files": len(files), "value_range_flag": FLAGS.value_range,
         "results": results}, indent=1))


if __name__ == "__main__":
  app.run(main)
