r"""How closely the float rebuild of each real TFLite model follows the interpreter.

For every model in <shared>/models/tflite, on a fixed subset of the real ILSVRC2012 val
sample (`folders.select_subset`: the same images on every run), with one preprocessing
for all (central crop 0.875, bicubic antialiased resize to the model's input size,
clip to [0, 1], pixels round(255 x) as uint8, so the interpreter and the rebuilds see
the same uint8 pixels):

  classifiers   top-1 of the real interpreter (uint8, XNNPACK, as deployed), of the
                rebuild in float mode and in fake-quant mode, and the top-1 agreement
                of each rebuild with the interpreter (argmax over outputs 1..1000:
                background dropped; TFLite index i + 1 = label i). The interpreter's
                uint8 probabilities can tie at the top: `ties` counts such images and
                "agree*" counts a rebuild as agreeing when its class is one of the tied.
                As a check of the preprocessing, the project's TFLite adapter
                (`classifiers.load_classifier(path, crop_fraction=0.875)`) must give
                the same predictions as the direct interpreter run.
  extractors    (models without a 1001-way output, e.g. the embedding extractor)
                cosine similarity and absolute difference (in quantization steps) of
                the rebuilt embedding to the interpreter's dequantized one.

Writes <output_dir>/tflite_rebuild.json and tflite_rebuild.md and prints the table.

  python experiments/imagenet/tflite_rebuild_check.py [--num_images=500] \
      [--output_dir=docs/results/imagenet] [--shared_dir=../shared]
"""

import datetime
import json
import os
import pathlib
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
# pylint: disable=g-import-not-at-top,wrong-import-position
from ai_edge_litert import interpreter as litert
from cdgan_tf import classifiers
from cdgan_tf.classifiers import tflite_rebuild
from cdgan_tf.data import folders
from cdgan_tf.data import image_files
# pylint: enable=g-import-not-at-top,wrong-import-position

CROP_FRACTION = 0.875

flags.DEFINE_string("shared_dir", os.environ.get("CDGAN_SHARED_DIR",
                                                 str(REPO_ROOT.parent / "shared")),
                    "The shared data folder (datasets/, models/).")
flags.DEFINE_integer("num_images", 500, "Images of the fixed val-sample subset.")
flags.DEFINE_string("output_dir", "docs/results/imagenet",
                    "Where the JSON and Markdown go (relative: to the repository root).")
flags.DEFINE_list("models", [], "Model stems under models/tflite (default: all).")
flags.DEFINE_integer("batch_size", 50, "Images per rebuild call.")
flags.DEFINE_integer("num_threads", 2, "TFLite interpreter threads.")
FLAGS = flags.FLAGS


def load_images(shared: pathlib.Path, count: int):
  """(uint8 [N, H, W, 3] images, int64 labels [N], stems) of the fixed subset."""
  folder = shared / "datasets/imagenet_val_sample"
  labels = folders.read_label_file(folder / "val.txt")
  stems = sorted(p.stem for p in folder.glob("*.JPEG") if p.stem in labels)
  if not stems:
    raise SystemExit(f"no labelled JPEGs in {folder} (set --shared_dir)")
  stems = folders.select_subset(stems, count)
  images = np.stack([image_files.load_rgb(folder / f"{stem}.JPEG") for stem in stems])
  return images, np.array([labels[s] for s in stems], np.int64), stems


def preprocess(images: np.ndarray, size) -> np.ndarray:
  """uint8 [N, H, W, 3] -> uint8 [N, *size, 3]: central crop, bicubic antialiased
  resize, clip, round(255 x)."""
  x = tf.image.central_crop(tf.image.convert_image_dtype(images, tf.float32), CROP_FRACTION)
  x = tf.clip_by_value(tf.image.resize(x, size, method="bicubic", antialias=True), 0.0, 1.0)
  return tf.cast(tf.round(x * 255.0), tf.uint8).numpy()


def interpret(path: str, pixels: np.ndarray) -> np.ndarray:
  """Dequantized float32 outputs [N, K] of the deployed interpreter, image by image."""
  interpreter = litert.Interpreter(model_path=path, num_threads=FLAGS.num_threads)
  interpreter.allocate_tensors()
  inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
  scale, zero_point = out["quantization"]
  outputs = []
  for image in pixels:
    interpreter.set_tensor(inp["index"], image[None])
    interpreter.invoke()
    outputs.append(interpreter.get_tensor(out["index"]).reshape(-1))
  outputs = np.stack(outputs).astype(np.float32)
  return (outputs - zero_point) * scale if scale else outputs


def rebuilt(model: tflite_rebuild.TFLiteRebuild, pixels: np.ndarray) -> np.ndarray:
  """The rebuild's outputs [N, num_outputs] (logits, or the embedding) on uint8 pixels."""
  return np.concatenate([
      model(pixels[i:i + FLAGS.batch_size].astype(np.float32) / 255.0).numpy()
      for i in range(0, len(pixels), FLAGS.batch_size)])


def check_classifier(path: str, images, pixels, labels) -> dict:
  reference = interpret(path, pixels)[:, 1:]
  predicted = np.argmax(reference, axis=1)
  tied = reference == reference.max(axis=1, keepdims=True)
  adapter = classifiers.load_classifier(path, crop_fraction=CROP_FRACTION,
                                        num_threads=FLAGS.num_threads)
  adapter_predicted = np.concatenate([
      adapter.predict(tf.image.convert_image_dtype(images[i:i + FLAGS.batch_size],
                                                   tf.float32)).numpy()
      for i in range(0, len(images), FLAGS.batch_size)])
  row = {"interpreter_top1": 100.0 * float(np.mean(predicted == labels)),
         "interpreter_ties": int(np.sum(tied.sum(axis=1) > 1)),
         "adapter_same_predictions": int(np.sum(adapter_predicted == predicted))}
  for mode in ("float", "fake_quant"):
    model = tflite_rebuild.TFLiteRebuild(path, fake_quant=mode == "fake_quant")
    logits = rebuilt(model, pixels)
    ours = np.argmax(logits[:, 1:], axis=1)
    probabilities = tf.nn.softmax(logits).numpy()[:, 1:]
    row[mode] = {
        "top1": 100.0 * float(np.mean(ours == labels)),
        "agreement": 100.0 * float(np.mean(ours == predicted)),
        "agreement_with_ties": 100.0 * float(np.mean(tied[np.arange(len(ours)), ours])),
        "probability_max_abs_diff": float(np.abs(probabilities - reference).max()),
        "probability_mean_abs_diff": float(np.abs(probabilities - reference).mean())}
  return row


def check_extractor(path: str, pixels) -> dict:
  reference = interpret(path, pixels)
  step = float(tflite_rebuild.TFLiteRebuild(path).output_tensor.scale[0])
  row = {"num_outputs": int(reference.shape[1]), "quantization_step": step}
  for mode in ("float", "fake_quant"):
    ours = rebuilt(tflite_rebuild.TFLiteRebuild(path, fake_quant=mode == "fake_quant"),
                   pixels)
    cosine = np.sum(ours * reference, axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1) + 1e-12)
    difference = np.abs(ours - reference) / step
    row[mode] = {"cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min()),
                 "max_abs_diff_steps": float(difference.max()),
                 "mean_abs_diff_steps": float(difference.mean()),
                 "within_one_step": 100.0 * float(np.mean(difference <= 1.0 + 1e-4))}
  return row


def markdown(results: dict) -> str:
  lines = [
      "# Float rebuild of the TFLite models vs the interpreter",
      "",
      f"{results['num_images']} images of the ILSVRC2012 val sample (fixed subset), "
      "central crop 0.875, bicubic antialiased resize, the same uint8 pixels for the "
      "interpreter (XNNPACK, as deployed) and the rebuild "
      "(`cdgan_tf.classifiers.tflite_rebuild.TFLiteRebuild`). Top-1 and agreement in %; agree* "
      "also counts a rebuild as agreeing where the interpreter's uint8 probabilities tie "
      "at the top and the rebuild picks one of the tied classes. Made by "
      "`experiments/imagenet/tflite_rebuild_check.py` on "
      f"{results['date']} ({results['seconds']:.0f} s).",
      "",
      "| model | input | interpreter top-1 | float top-1 | fake-quant top-1 | "
      "float agree | fake-quant agree | float agree* | fake-quant agree* | ties |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for name, row in results["classifiers"].items():
    f, q = row["float"], row["fake_quant"]
    lines.append(
        f"| {name} | {row['input_size'][0]} | {row['interpreter_top1']:.1f} | "
        f"{f['top1']:.1f} | {q['top1']:.1f} | {f['agreement']:.1f} | "
        f"{q['agreement']:.1f} | {f['agreement_with_ties']:.1f} | "
        f"{q['agreement_with_ties']:.1f} | {row['interpreter_ties']} |")
  if results["extractors"]:
    lines += ["", "Embedding extractors: rebuilt embedding vs the interpreter's "
              "(dequantized); differences in quantization steps of the output.", "",
              "| model | mode | cosine mean | cosine min | mean abs diff | max abs diff | "
              "within 1 step (%) |", "|---|---|---|---|---|---|---|"]
    for name, row in results["extractors"].items():
      for mode in ("float", "fake_quant"):
        r = row[mode]
        lines.append(f"| {name} | {mode} | {r['cosine_mean']:.5f} | {r['cosine_min']:.5f} "
                     f"| {r['mean_abs_diff_steps']:.2f} | {r['max_abs_diff_steps']:.1f} | "
                     f"{r['within_one_step']:.1f} |")
  return "\n".join(lines) + "\n"


def rounded(value, digits: int = 6):
  """The same structure with floats rounded (readable JSON)."""
  if isinstance(value, float):
    return round(value, digits)
  if isinstance(value, dict):
    return {k: rounded(v, digits) for k, v in value.items()}
  if isinstance(value, list):
    return [rounded(v, digits) for v in value]
  return value


def write_atomic(path: pathlib.Path, text: str) -> None:
  with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                   delete=False) as f:
    f.write(text)
  os.chmod(f.name, 0o644)  # NamedTemporaryFile creates 0600.
  os.replace(f.name, path)


def main(argv):
  del argv
  start = time.time()
  shared = pathlib.Path(FLAGS.shared_dir)
  model_dir = shared / "models/tflite"
  paths = sorted(model_dir.glob("*.tflite"))
  if FLAGS.models:
    paths = [model_dir / f"{m}.tflite" for m in FLAGS.models]
  if not paths:
    raise SystemExit(f"no .tflite files in {model_dir} (set --shared_dir)")
  images, labels, stems = load_images(shared, FLAGS.num_images)
  print(f"{len(stems)} images, {len(set(labels.tolist()))} classes", flush=True)
  results = {"num_images": len(stems), "crop_fraction": CROP_FRACTION,
             "resize": "bicubic, antialias, clip", "first_images": stems[:5],
             "tensorflow": tf.__version__, "classifiers": {}, "extractors": {}}
  for path in paths:
    model_start = time.time()
    model = tflite_rebuild.TFLiteRebuild(path)
    pixels = preprocess(images, model.input_size)
    if model.num_outputs == 1001:
      row = check_classifier(str(path), images, pixels, labels)
      results["classifiers"][path.stem] = row
      summary = (f"top-1 interpreter {row['interpreter_top1']:.1f} float "
                 f"{row['float']['top1']:.1f} fake-quant {row['fake_quant']['top1']:.1f}; "
                 f"agreement {row['float']['agreement']:.1f} / "
                 f"{row['fake_quant']['agreement']:.1f}; adapter same "
                 f"{row['adapter_same_predictions']}/{len(stems)}")
    else:
      row = check_extractor(str(path), pixels)
      results["extractors"][path.stem] = row
      summary = (f"cosine {row['float']['cosine_mean']:.5f} / "
                 f"{row['fake_quant']['cosine_mean']:.5f}")
    row.update(input_size=list(model.input_size), ops=sorted(set(model.op_names)))
    print(f"{path.stem}: {summary} [{time.time() - model_start:.0f} s]", flush=True)
  results["seconds"] = time.time() - start
  results["date"] = datetime.date.today().isoformat()
  output_dir = pathlib.Path(FLAGS.output_dir)
  if not output_dir.is_absolute():
    output_dir = REPO_ROOT / output_dir
  output_dir.mkdir(parents=True, exist_ok=True)
  table = markdown(results)
  write_atomic(output_dir / "tflite_rebuild.json", json.dumps(rounded(results), indent=1) + "\n")
  write_atomic(output_dir / "tflite_rebuild.md", table)
  print()
  print(table)


if __name__ == "__main__":
  app.run(main)
