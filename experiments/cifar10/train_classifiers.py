r"""Trains the CIFAR-10 classifiers of the scaled-down CD-GAN experiment on one CPU thread.

Three targets in the paper's families (resnet_v2, mobilenet_v2, inception) and one
surrogate of another family (vgg_surrogate, used only to craft the transfer-attack set,
as DAmageNet used VGG19); architectures in experiments/cifar10/models.py.

Data: <data_dir>/{train,test}/<class>/*.jpg (label = index of the class folder in sorted
order), decoded once with PIL and cached as uint8 arrays in <work_dir>/cifar10_uint8.npz.
Training: random crop (4 px zero pad) + horizontal flip, batch 128, SGD with Nesterov
momentum, linear warm-up then cosine decay, weight decay, label smoothing. Per epoch it
prints the training loss / accuracy and the accuracy on --monitor_images test images
(every k-th; monitoring only, nothing is selected on it). The reported top-1 is measured on
all 10,000 test images with the saved model.

Resumable: each model checkpoints every epoch into <work_dir>/<name>/ (Keras
BackupAndRestore); a rerun continues where a session stopped, and models whose
<output_dir>/<name>.keras already exists (with an entry in classifiers.json) are skipped.

Output: <output_dir>/<name>.keras (float32, built-in Keras layers only, input float32
[N, 32, 32, 3] in [0, 1], output logits [N, 10]) and <output_dir>/classifiers.json.

Usage (from the repo root; about an hour for all four on one core):
  nohup .venv/bin/python experiments/cifar10/train_classifiers.py \
      > /tmp/cdgan_cifar_work/train.log 2>&1 &
  .venv/bin/python experiments/cifar10/train_classifiers.py --models=resnet_v2 --epochs=1 \
      --output_dir=/tmp/cifar_try
"""

import datetime
import os
import pathlib
import time

# One thread unless told otherwise; these must be set before TensorFlow starts.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position
import keras  # pylint: disable=g-import-not-at-top,wrong-import-position

import models  # pylint: disable=g-import-not-at-top,wrong-import-position  (the script's folder)
from cdgan_tf.common import errors
from cdgan_tf.common import files  # pylint: disable=g-import-not-at-top,wrong-import-position
from cdgan_tf.data import folders  # pylint: disable=g-import-not-at-top,wrong-import-position
from cdgan_tf.data import image_files  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

# Per-model defaults chosen from measured step times on one core (see README.md):
# epochs so each training takes about 12-17 minutes (all four about an hour), and the
# faster precision.
TRAINING_DEFAULTS = {
    "resnet_v2": {"epochs": 8, "mixed_bfloat16": True},
    "mobilenet_v2": {"epochs": 6, "mixed_bfloat16": False},
    "inception": {"epochs": 5, "mixed_bfloat16": True},
    "vgg_surrogate": {"epochs": 6, "mixed_bfloat16": True},
    "densenet_feature": {"epochs": 6, "mixed_bfloat16": True},
}
ARCHITECTURE_NOTES = {
    "resnet_v2": "ResNet-20-v2 (pre-activation, 3 stages x 3 basic blocks, widths "
                 "16/32/64 at 32/16/8 px), GAP, dense",
    "mobilenet_v2": "MobileNet-v2 alpha 0.5 for 32x32 (stem conv/2, 12 inverted residual "
                    "blocks t=6, ReLU6, linear bottlenecks, 3 stride-2 steps 32->4 px, "
                    "1x1 conv 640), GAP, dropout 0.1, dense",
    "inception": "Inception-style (2 stem convs at 32 px, grid reductions to 16 and 8 px, "
                 "2 inception blocks per reduced stage with 1x1 | 1x1-3x3 | "
                 "1x1-3x3-3x3 | maxpool-1x1 branches, widths 16/32 base), GAP, dropout "
                 "0.1, dense",
    "vgg_surrogate": "VGG-style plain stack ((conv3x3-BN-ReLU) x2 + maxpool) x3, widths "
                     "48/96/192, GAP, dropout 0.1, dense",
    "densenet_feature": "DenseNet-BC (stem conv 32, 3 dense blocks x 4 bottleneck layers, "
                        "growth 16, compression 0.5, avg-pool transitions), GAP, dense; "
                        "the feature network of the feature loss (neither a target nor "
                        "the surrogate)",
}

flags.DEFINE_list("models", list(TRAINING_DEFAULTS),
                  f"Architectures to train, in order; among {', '.join(TRAINING_DEFAULTS)}.")
flags.DEFINE_integer("epochs", None, "Epochs for every selected model (default: per "
                     "model, " + ", ".join(f"{k}={v['epochs']}"
                                           for k, v in TRAINING_DEFAULTS.items()) + ").")
flags.DEFINE_string("data_dir", os.environ.get(
    "CDGAN_DATA_DIR", str(REPO_ROOT.parent / "shared" / "datasets" / "cifar10")),
                    "CIFAR-10 folder with train/<class>/*.jpg and test/<class>/*.jpg "
                    "(default: $CDGAN_DATA_DIR or ../shared/datasets/cifar10).")
flags.DEFINE_string("output_dir", str(REPO_ROOT / "weights" / "cifar10"),
                    "Where <name>.keras and classifiers.json are written.")
flags.DEFINE_string("work_dir", "/tmp/cdgan_cifar_work",
                    "Scratch folder: decoded-image cache and per-model checkpoints.")
flags.DEFINE_integer("batch_size", 128, "Training batch size.")
flags.DEFINE_float("learning_rate", 0.1, "Peak SGD learning rate.")
flags.DEFINE_float("warmup_fraction", 0.15, "Fraction of the steps spent warming up "
                   "linearly from lr/10 to the peak, before the cosine decay to 0.")
flags.DEFINE_float("weight_decay", 5e-4, "Decoupled weight decay (times the lr).")
flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing of the cross-entropy.")
flags.DEFINE_enum("precision", "auto", ["auto", "float32", "mixed_bfloat16"],
                  "Training compute precision; auto = the faster one per model. "
                  "Saved models are always float32.")
flags.DEFINE_integer("monitor_images", 2000, "N test images (every k-th, all classes) "
                     "scored after every epoch for progress output (0: none).")
flags.DEFINE_integer("threads", 1, "TensorFlow intra- and inter-op threads.")
flags.DEFINE_integer("train_limit", 0, "Train on a seeded random subset of N images "
                     "(0: all; for smoke tests, never for the committed weights).")
flags.DEFINE_integer("seed", 0, "Random seed (weights, shuffling, augmentation).")
flags.DEFINE_bool("overwrite", False, "Retrain models whose .keras file already exists.")

FLAGS = flags.FLAGS
IMAGE_SHAPE = (32, 32, 3)


def log(message: str) -> None:
  stamp = datetime.datetime.now().strftime("%H:%M:%S")
  print(f"[{stamp}] {message}", flush=True)


# ----------------------------------------------------------------------------------------
# Data.


def class_names(data_dir: pathlib.Path) -> list:
  """Sorted class-folder names of <data_dir>/train (must equal those of test)."""
  names = {}
  for split in ("train", "test"):
    folder = data_dir / split
    if not folder.is_dir():
      raise FileNotFoundError(f"--data_dir={data_dir}: missing folder {folder}")
    names[split] = folders.class_names(folder)
  if names["train"] != names["test"] or len(names["train"]) != models.NUM_CLASSES:
    raise errors.UsageError(f"--data_dir={data_dir}: expected the same {models.NUM_CLASSES} "
                            f"class folders in train and test, got {names['train']} and "
                            f"{names['test']}")
  return names["train"]


def load_split(data_dir: pathlib.Path, split: str, classes: list):
  """Decodes <data_dir>/<split>/<class>/*: uint8 [N, 32, 32, 3] RGB, int64 [N].

  Listed and labelled by `folders.list_labelled_images` (label = sorted class index),
  decoded by `image_files.load_rgb`, ordered by class then file as before.
  """
  listed, _ = folders.list_labelled_images(data_dir / split)
  if folders.class_names(data_dir / split) != list(classes):
    raise errors.UsageError(f"--data_dir={data_dir}: {split}/ has other class folders")
  images, labels = [], []
  for _, path, label in sorted(listed, key=lambda item: (item[2], item[0])):
    array = image_files.load_rgb(path)
    if array.shape != IMAGE_SHAPE:
      raise errors.UsageError(f"{path}: expected a 32x32 image, got {array.shape}")
    images.append(array)
    labels.append(label)
  if not images:
    raise errors.UsageError(f"--data_dir={data_dir}: no images under {split}/")
  return np.stack(images), np.asarray(labels, np.int64)


def load_cifar10(data_dir: pathlib.Path, cache: pathlib.Path) -> dict:
  """Train/test arrays and class names, from the .npz cache when it is current."""
  classes = class_names(data_dir)
  if cache.exists():
    with np.load(cache) as data:
      arrays = {k: data[k] for k in data.files}
    if list(arrays["class_names"]) == classes and str(arrays["data_dir"]) == str(data_dir):
      log(f"loaded {cache}: {len(arrays['y_train'])} train, {len(arrays['y_test'])} test")
      return arrays
  start = time.time()
  x_train, y_train = load_split(data_dir, "train", classes)
  x_test, y_test = load_split(data_dir, "test", classes)
  arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "class_names": np.asarray(classes), "data_dir": np.asarray(str(data_dir))}
  cache.parent.mkdir(parents=True, exist_ok=True)
  with files.atomic_path(str(cache)) as partial:
    np.savez(partial, **arrays)
  log(f"decoded {data_dir} in {time.time() - start:.0f} s: {len(y_train)} train, "
      f"{len(y_test)} test; cached in {cache}")
  return arrays


def augment_batch(images: tf.Tensor, labels: tf.Tensor):
  """Random crop of the 4-pixel zero-padded image and random horizontal flip.

  Args:
    images: uint8 [B, 32, 32, 3].
    labels: int64 [B].

  Returns:
    (float32 [B, 32, 32, 3] in [0, 1], labels).
  """
  x = tf.cast(images, tf.float32) / 255.0
  size = tf.shape(x)[0]
  padded = tf.pad(x, [[0, 0], [4, 4], [4, 4], [0, 0]])
  offsets = tf.random.uniform([2, size], 0, 9, dtype=tf.int32)
  rows = offsets[0][:, None] + tf.range(32)[None, :]
  cols = offsets[1][:, None] + tf.range(32)[None, :]
  x = tf.gather(padded, rows, axis=1, batch_dims=1)
  x = tf.gather(x, cols, axis=2, batch_dims=1)
  flip = tf.random.uniform([size]) < 0.5
  x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
  return x, labels


def train_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=seed)
  ds = ds.batch(batch_size, drop_remainder=True).map(augment_batch).prefetch(1)
  return ds.with_options(options)


def top1(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> float:
  """Top-1 accuracy (fraction) of a [0, 1]-input logits model on uint8 images."""
  predict = tf.function(lambda images: tf.argmax(model(images, training=False), -1))
  correct = 0
  for start in range(0, len(y), batch_size):
    batch = tf.constant(x[start:start + batch_size], tf.float32) / 255.0
    correct += int(np.sum(predict(batch).numpy() == y[start:start + batch_size]))
  return correct / len(y)


# ----------------------------------------------------------------------------------------
# Training one model.


class ProgressAndTime(keras.callbacks.Callback):
  """Prints one line per epoch and accumulates training time across sessions."""

  def __init__(self, state_path: pathlib.Path, total_epochs: int, monitor):
    super().__init__()
    self.state_path = state_path
    self.total_epochs = total_epochs
    self.monitor = monitor  # None or (x uint8, y)
    self.state = {"train_wall_seconds": 0.0, "train_cpu_seconds": 0.0, "sessions": 0,
                  "epochs_done": 0}
    if state_path.exists():
      self.state.update(files.read_json(str(state_path)))

  def on_train_begin(self, logs=None):
    self.state["sessions"] += 1

  def on_epoch_begin(self, epoch, logs=None):
    self._wall, self._cpu = time.time(), time.process_time()

  def on_epoch_end(self, epoch, logs=None):
    wall, cpu = time.time() - self._wall, time.process_time() - self._cpu
    self.state["train_wall_seconds"] += wall
    self.state["train_cpu_seconds"] += cpu
    self.state["epochs_done"] = epoch + 1
    _write_json(self.state_path, self.state)
    logs = logs or {}
    lr = float(keras.ops.convert_to_numpy(
        self.model.optimizer.learning_rate))
    line = (f"{self.model.name} epoch {epoch + 1}/{self.total_epochs}: "
            f"loss {logs.get('loss', float('nan')):.4f} "
            f"train_acc {logs.get('accuracy', float('nan')):.4f}")
    if self.monitor is not None:
      line += (f" test_acc({len(self.monitor[1])} imgs) "
               f"{top1(self.model, *self.monitor):.4f}")
    line += (f" lr {lr:.4f} | epoch {wall:.0f} s wall, {cpu:.0f} s cpu | total "
             f"{self.state['train_wall_seconds'] / 60:.1f} min")
    log(line)


def _write_json(path: pathlib.Path, data) -> None:
  files.write_json(str(path), data)


def train_one(name: str, data: dict, epochs: int, mixed_bfloat16: bool,
              work_dir: pathlib.Path) -> tuple:
  """Trains (or resumes) `name`; returns (float32 built-in model, time state dict)."""
  model_dir = work_dir / name
  model_dir.mkdir(parents=True, exist_ok=True)
  final_weights = model_dir / "final.weights.h5"
  state_path = model_dir / "time.json"
  keras.utils.set_random_seed(FLAGS.seed)
  export = models.build(name)
  trainable = models.training_clone(export, mixed_bfloat16=mixed_bfloat16)
  if final_weights.exists():
    log(f"{name}: training already finished, loading {final_weights}")
    trainable.load_weights(final_weights)
    return models.copy_weights(trainable, export), files.read_json(str(state_path))

  steps_per_epoch = len(data["y_train"]) // FLAGS.batch_size
  total = steps_per_epoch * epochs
  warmup = int(FLAGS.warmup_fraction * total)
  schedule = keras.optimizers.schedules.CosineDecay(
      initial_learning_rate=FLAGS.learning_rate / 10, decay_steps=total - warmup,
      alpha=0.0, warmup_target=FLAGS.learning_rate, warmup_steps=warmup)
  optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True,
                                   weight_decay=FLAGS.weight_decay)
  optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
  trainable.compile(
      optimizer=optimizer,
      loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                label_smoothing=FLAGS.label_smoothing),
      metrics=["accuracy"])
  monitor = None
  if FLAGS.monitor_images:
    # The test set is ordered by class: take every k-th image for a balanced subset.
    stride = max(1, len(data["y_test"]) // FLAGS.monitor_images)
    monitor = (data["x_test"][::stride][:FLAGS.monitor_images],
               data["y_test"][::stride][:FLAGS.monitor_images])
  one_hot = lambda x, y: (x, tf.one_hot(y, models.NUM_CLASSES))
  dataset = train_dataset(data["x_train"], data["y_train"], FLAGS.batch_size,
                          FLAGS.seed).map(one_hot)
  log(f"{name}: {export.count_params():,} params, {epochs} epochs x {steps_per_epoch} "
      f"steps, {'mixed_bfloat16' if mixed_bfloat16 else 'float32'}, checkpoints in "
      f"{model_dir}")
  trainable.fit(
      dataset, epochs=epochs, verbose=0,
      callbacks=[
          # Checkpoint first, then record the epoch's time: a stop in between loses
          # that epoch's seconds rather than counting an epoch that will rerun.
          keras.callbacks.BackupAndRestore(str(model_dir / "backup")),
          ProgressAndTime(state_path, epochs, monitor),
      ])
  partial = model_dir / "final.partial.weights.h5"  # Keras wants the .weights.h5 suffix.
  trainable.save_weights(partial)
  os.replace(partial, final_weights)
  return models.copy_weights(trainable, export), files.read_json(str(state_path))


def save_model(model: keras.Model, path: pathlib.Path) -> None:
  """Saves atomically (`files.atomic_path`); the model is not compiled, so the file
  holds no optimizer state."""
  with files.atomic_path(str(path)) as partial:
    model.save(partial)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
  tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
  unknown = [m for m in FLAGS.models if m not in TRAINING_DEFAULTS]
  if unknown:
    raise app.UsageError(f"--models: unknown {', '.join(unknown)}; choose from "
                         f"{', '.join(TRAINING_DEFAULTS)}")
  if FLAGS.epochs is not None and FLAGS.epochs < 1:
    raise app.UsageError(f"--epochs={FLAGS.epochs} must be >= 1")
  data_dir = pathlib.Path(FLAGS.data_dir)
  output_dir = pathlib.Path(FLAGS.output_dir)
  work_dir = pathlib.Path(FLAGS.work_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  work_dir.mkdir(parents=True, exist_ok=True)
  metrics_path = output_dir / "classifiers.json"
  metrics = files.read_json(str(metrics_path)) if metrics_path.exists() else {}

  data = load_cifar10(data_dir, work_dir / "cifar10_uint8.npz")
  if FLAGS.train_limit:
    order = np.random.default_rng(FLAGS.seed).permutation(len(data["y_train"]))
    keep = np.sort(order[:FLAGS.train_limit])
    data["x_train"], data["y_train"] = data["x_train"][keep], data["y_train"][keep]
    log(f"--train_limit: training on {len(keep)} images only")
  classes = [str(c) for c in data["class_names"]]
  for name in FLAGS.models:
    path = output_dir / f"{name}.keras"
    if path.exists() and name in metrics and not FLAGS.overwrite:
      log(f"{name}: {path} exists (test top-1 {metrics[name]['test_top1']:.4f}); skipped")
      continue
    defaults = TRAINING_DEFAULTS[name]
    epochs = FLAGS.epochs or defaults["epochs"]
    bf16 = (defaults["mixed_bfloat16"] if FLAGS.precision == "auto"
            else FLAGS.precision == "mixed_bfloat16")
    if path.exists() and not FLAGS.overwrite:
      log(f"{name}: {path} exists without a metrics entry; scoring it")
      model = keras.models.load_model(path)
      state_path = work_dir / name / "time.json"
      state = files.read_json(str(state_path)) if state_path.exists() else {}
    else:
      model, state = train_one(name, data, epochs, bf16, work_dir)
      save_model(model, path)
      model = keras.models.load_model(path)  # Score the file itself.
    start = time.time()
    accuracy = top1(model, data["x_test"], data["y_test"])
    log(f"{name}: test top-1 {accuracy:.4f} on {len(data['y_test'])} images "
        f"({time.time() - start:.0f} s); {path} ({path.stat().st_size / 1e6:.2f} MB)")
    metrics[name] = {
        "role": models.ARCHITECTURES[name][1],
        "architecture": ARCHITECTURE_NOTES[name],
        "builder": f"experiments/cifar10/models.py:{name}()",
        "file": path.name,
        "file_bytes": path.stat().st_size,
        "params": model.count_params(),
        "epochs": state.get("epochs_done", epochs),
        "batch_size": FLAGS.batch_size,
        "optimizer": (f"SGD nesterov momentum 0.9, peak lr {FLAGS.learning_rate}, linear "
                      f"warm-up {FLAGS.warmup_fraction:.0%} from lr/10, cosine to 0, "
                      f"weight decay {FLAGS.weight_decay} (not on BN/bias), label "
                      f"smoothing {FLAGS.label_smoothing}"),
        "augmentation": "random crop 32 of 4-px zero-padded image, horizontal flip",
        "training_precision": "mixed_bfloat16" if bf16 else "float32",
        "threads": FLAGS.threads,
        "train_wall_seconds": round(state.get("train_wall_seconds", float("nan")), 1),
        "train_cpu_seconds": round(state.get("train_cpu_seconds", float("nan")), 1),
        "train_sessions": state.get("sessions"),
        "test_top1": round(accuracy, 4),
        "test_images": int(len(data["y_test"])),
        "input": {"value_range": "0_1", "height": 32, "width": 32, "channels": 3,
                  "dtype": "float32", "layout": "NHWC RGB"},
        "output": "logits [N, 10] (no softmax)",
        "num_classes": models.NUM_CLASSES,
        "label_order": "sorted class folder names",
        "class_names": classes,
        "seed": FLAGS.seed,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
    }
    _write_json(metrics_path, metrics)
  log("done: " + ", ".join(f"{k} {v['test_top1']:.4f}" for k, v in metrics.items()))


if __name__ == "__main__":
  app.run(main)
