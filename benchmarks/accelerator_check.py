"""Accelerator check: train, evaluate and export the chain on a GPU in one command.

For the day a GPU is at hand. Under `tf.distribute.MirroredStrategy` (all local GPUs;
all local CPU devices when there is none), a Keras mixed-precision policy and XLA
(`GanStep(..., jit_compile=True)`: each replica's step compiled), it

  1. trains the sub GAN with the library's own loop (`training.controller` driving
     `training.GanStep`: records -> tf.data -> multi-step tf.function, summaries,
     checkpoints, validation, generator export) on synthetic records (smooth images
     plus a +-8/255 sign pattern, as an L-inf attack leaves) or on --train_records;
  2. trains the super GAN chained on the frozen, exported sub generator
     (`TrainConfig.sub_model`, what `train_super.py --sub_model` does);
  3. evaluates the chain (`defenses.CdganPurifier` from the two exports) by PSNR
     against the clean images on --eval_examples held-out synthetic pairs, next to the
     PSNR of the attacked input itself;
  4. exports the chain as the project's serving SavedModel (`serving.export_purifier`),
     reloads it and serves the held-out images through `serving_default` and
     `serving_bytes`, comparing with the in-memory chain;

and writes JSON: devices (`tf.config` physical devices with
`tf.config.experimental.get_device_details`, e.g. the GPU's name and compute
capability), strategy, replicas, policy, jit, per GAN the images/s of the timed train
calls (the first `train` call of each phase, warm-up and adversarial, traces and
compiles its loop and is not timed; every later chunk is, up to the last step) and
GFLOP/s from the TF profiler's count of one train step (`benchlib.gan_step_flops`),
the validation metrics, the chain's PSNR, the export path and reload check, and the
wall time of each phase and of the whole run.

Defaults (one GPU, aimed at well under 5 minutes): 256 px, scale 2, 8 residual blocks
x 32 filters, discriminator 32 (the shipped ImageNet weights' sizes), global batch 16,
300 steps per GAN (the first 50 content-only) in loops of 50 steps, 512 synthetic
training and 32 held-out images. By the profiler count a 256-px sub step at batch 8
is ~198 GFLOP and a super step ~356 GFLOP (README, Throughput), so 300 steps of
both at batch 16 are ~330 TFLOP: tens of seconds at the tens of TFLOP/s a current GPU
sustains in float16, leaving the rest of the 5 minutes for XLA compilation (two loops
per GAN), record writing, checkpoints and the export. THIS HAS NOT BEEN RUN ON A GPU:
the sessions that wrote it had none; only `--tiny` has run, on the 2-core CPU.

`--tiny` (the test suite's setting, seconds on a CPU): 16 px, scale 2, 1 block x 8
filters, batch 4, 6 steps per GAN, 16 + 4 examples, policy mixed_bfloat16 (this CPU
has AVX512-BF16; mixed_float16 runs but is emulated) and no XLA: XLA does work here
under MirroredStrategy, but compiling the tiny step's two loops took 44-68 s on this
loaded machine. Any flag given explicitly overrides the --tiny value.

  python benchmarks/accelerator_check.py --output_json=results/bench/accelerator_check.json
  python benchmarks/accelerator_check.py --tiny --output_json=/tmp/check.json
"""

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

import os  # pylint: disable=g-bad-import-order
import tempfile
import time

from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

import benchlib
from cdgan_tf import config as config_lib
from cdgan_tf import image_ops
from cdgan_tf.data import synthetic
from cdgan_tf.defenses import cdgan as cdgan_lib
from cdgan_tf.serving import saving
from cdgan_tf.models import generator_files
from cdgan_tf.training import actions as actions_lib
from cdgan_tf.training import controller as controller_lib
from cdgan_tf.training import distribute
from cdgan_tf.training import gan_step as gan_step_lib

_TINY = dict(image_size=16, scale=2, num_res_blocks=1, filters=8, discriminator_filters=8,
             batch_size=4, steps=6, warmup_steps=2, steps_per_loop=2, examples=16,
             eval_examples=4, policy="mixed_bfloat16", jit=False)
flags.DEFINE_bool("tiny", False, "CPU smoke settings (see the module docstring).")
flags.DEFINE_integer("image_size", 256, "Large image side.", lower_bound=2)
flags.DEFINE_integer("scale", 2, "Scale factor (a power of 2).", lower_bound=1)
flags.DEFINE_integer("num_res_blocks", 8, "Generator residual blocks.", lower_bound=0)
flags.DEFINE_integer("filters", 32, "Generator filters.", lower_bound=1)
flags.DEFINE_integer("discriminator_filters", 32, "Discriminator filters.", lower_bound=1)
flags.DEFINE_integer("batch_size", 16, "Global batch size (split over the replicas).",
                     lower_bound=1)
flags.DEFINE_integer("steps", 300, "Train steps of each GAN.", lower_bound=1)
flags.DEFINE_integer("warmup_steps", 50, "Content-only first steps of each GAN.",
                     lower_bound=0)
flags.DEFINE_integer("steps_per_loop", 50, "Steps per tf.function call.", lower_bound=1)
flags.DEFINE_integer("examples", 512, "Synthetic training examples.", lower_bound=1)
flags.DEFINE_integer("eval_examples", 32, "Held-out synthetic pairs (validation split "
                     "and the chain's PSNR).", lower_bound=1)
flags.DEFINE_string("train_records", "", "TFRecord glob to train on instead of the "
                    "synthetic records (the builder's format).")
flags.DEFINE_string("val_records", "", "Validation TFRecord glob (with --train_records).")
flags.DEFINE_enum("strategy", "mirrored", ["mirrored", "default"], "Distribution.")
flags.DEFINE_enum("policy", "mixed_float16", ["none", "mixed_float16", "mixed_bfloat16"],
                  "Keras mixed-precision policy of training.")
flags.DEFINE_bool("jit", True, "XLA-compile each replica's train step.")
flags.DEFINE_string("work_dir", "", "Where runs, records and the export go (default: a "
                    "new temporary folder, kept).")
flags.DEFINE_string("output_json", "", "Write the figures to this JSON file.")
FLAGS = flags.FLAGS



def _apply_tiny() -> None:
  for name, value in _TINY.items():
    if not FLAGS[name].present:
      FLAGS[name].value = value


def devices() -> list:
  """Physical devices with the details TensorFlow reports (GPU name, capability)."""
  out = []
  for device in tf.config.list_physical_devices():
    entry = {"name": device.name, "type": device.device_type}
    try:
      details = tf.config.experimental.get_device_details(device)
    except (ValueError, tf.errors.OpError):
      details = {}
    entry.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in details.items()})
    out.append(entry)
  return out


def _experiment(role: str, model_dir: str, train: str, val: str,
                sub_model: str = "") -> config_lib.ExperimentConfig:
  steps = FLAGS.steps
  return config_lib.from_flat(
      **benchlib.flag_values(FLAGS, benchlib.SIZE_FLAGS), role=role,
      train_records=train, val_records=val, train_steps=steps,
      warmup_steps=min(FLAGS.warmup_steps, steps), sub_model=sub_model,
      model_dir=model_dir, steps_per_loop=FLAGS.steps_per_loop, summary_every=steps,
      checkpoint_every=steps, eval_every=0, strategy=FLAGS.strategy,
      mixed_precision=FLAGS.policy)


class _ChunkTimer(actions_lib.Callback):
  """Times every `GanStep.train` call of the controller (a controller callback).

  The first call of each phase (warm-up, adversarial) traces and (with XLA) compiles
  its loop and is not timed; `timed` holds steps, seconds and those first calls.
  """

  def __init__(self, warmup_steps: int, step: gan_step_lib.GanStep):
    self._warmup, self._step = warmup_steps, step
    self.timed = {"steps": 0, "seconds": 0.0, "first_call_seconds": []}
    self._traced = set()  # Phases whose loop has run once.

  def on_chunk_begin(self, step_number: int, num_steps: int) -> None:
    self._phase = step_number >= self._warmup
    self._ends = step_number + num_steps > self._warmup
    self._num, self._wall = num_steps, time.perf_counter()

  def on_chunk_trained(self, step_number: int) -> None:
    int(self._step.step.numpy())  # Waits for the loop (device ops run asynchronously).
    seconds = time.perf_counter() - self._wall
    if self._phase in self._traced:
      self.timed["steps"] += self._num
      self.timed["seconds"] += seconds
    else:  # Traces and (with XLA) compiles this phase's loop (maybe both): not timed.
      self.timed["first_call_seconds"].append(seconds)
      self._traced.update({self._phase, self._ends})


def train_gan(role: str, strategy, root: str, train: str, val: str,
              sub_model: str = "") -> dict:
  """Trains one GAN with Controller + GanStep; returns its figures and export path."""
  start = time.perf_counter()
  experiment = _experiment(role, os.path.join(root, role), train, val, sub_model)
  step = gan_step_lib.GanStep(experiment, strategy, jit_compile=FLAGS.jit)
  timer = _ChunkTimer(experiment.train.warmup_steps, step)
  metrics = controller_lib.run(experiment, step=step, callbacks=[timer])
  timed = timer.timed
  seconds = time.perf_counter() - start
  flops = benchlib.gan_step_flops(step, step.first_batch(validation=False))
  images_per_sec = (timed["steps"] * FLAGS.batch_size / timed["seconds"]
                    if timed["seconds"] else None)
  return {"role": role, "steps": FLAGS.steps, "timed_steps": timed["steps"],
          "timed_seconds": timed["seconds"],
          "first_call_seconds": timed["first_call_seconds"],
          "images_per_sec": images_per_sec,
          "gflop_per_step": flops / 1e9,
          "gflops_per_sec": (flops / FLAGS.batch_size * images_per_sec / 1e9
                             if images_per_sec else None),
          "val_metrics": metrics, "wall_seconds": seconds,
          "export_path": os.path.join(experiment.runtime.model_dir,
                                      generator_files.EXPORT_DIR,
                                      generator_files.GENERATOR_FILE)}


def evaluate_and_export(sub_path: str, super_path: str, root: str) -> dict:
  """The chain's PSNR on held-out pairs, its serving export and the reload check."""
  purifier = cdgan_lib.CdganPurifier.from_files(sub_path, super_path)
  adversarial, clean = synthetic.sign_pairs(FLAGS.image_size, FLAGS.eval_examples, seed=2)
  adversarial = tf.constant(adversarial, tf.float32) / 255.0
  clean = tf.constant(clean, tf.float32) / 255.0
  purified = purifier(adversarial)
  export_dir = saving.export_purifier(purifier, os.path.join(root, "chain"),
                                      overwrite=True)
  loaded = saving.load(export_dir)
  served = loaded.signatures["serving_default"](images=adversarial)["purified"]
  encoded = tf.constant([tf.io.encode_png(tf.cast(tf.round(a * 255), tf.uint8)).numpy()
                         for a in adversarial])
  served_bytes = loaded.signatures["serving_bytes"](image_bytes=encoded)["purified"]
  served_diff = float(tf.reduce_max(tf.abs(served - purified)))
  bytes_diff = float(tf.reduce_max(tf.abs(served_bytes - purified)))
  return {"chain_psnr_db": float(tf.reduce_mean(image_ops.psnr(purified, clean))),
          "input_psnr_db": float(tf.reduce_mean(image_ops.psnr(adversarial, clean))),
          "eval_images": FLAGS.eval_examples, "export_dir": export_dir,
          "reload_max_abs_diff": served_diff, "reload_bytes_max_abs_diff": bytes_diff,
          "reload_ok": bool(served.shape == purified.shape and served_diff <= 1e-5
                            and bytes_diff <= 1e-5)}


def main(argv):
  del argv
  if FLAGS.tiny:
    _apply_tiny()
  if FLAGS.val_records and not FLAGS.train_records:
    raise cli.UsageError("--val_records needs --train_records")
  logging.set_verbosity(logging.WARNING)
  begin = time.perf_counter()
  strategy = distribute.make_strategy(FLAGS.strategy)  # Before any other TF op.
  root = FLAGS.work_dir or tempfile.mkdtemp(prefix="accelerator_check_")
  tf.io.gfile.makedirs(root)
  train, val = FLAGS.train_records, FLAGS.val_records
  if not train:
    train = synthetic.write_records(
        root, "train", synthetic.sign_pairs(FLAGS.image_size, FLAGS.examples, seed=0))
    val = synthetic.write_records(
        root, "val", synthetic.sign_pairs(FLAGS.image_size, FLAGS.eval_examples, seed=1))
  sub = train_gan("sub", strategy, root, train, val)
  sup = train_gan("super", strategy, root, train, val, sub_model=sub["export_path"])
  start = time.perf_counter()
  chain = evaluate_and_export(sub["export_path"], sup["export_path"], root)
  chain["wall_seconds"] = time.perf_counter() - start
  results = {"devices": devices(), "strategy": type(strategy).__name__,
             "replicas": strategy.num_replicas_in_sync, "policy": FLAGS.policy,
             "jit": FLAGS.jit, "gans": [sub, sup], "chain": chain, "work_dir": root,
             "wall_seconds": time.perf_counter() - begin}
  for row in (sub, sup):
    print(f"{row['role']:6} {row['images_per_sec'] or 0:9.1f} img/s "
          f"{row['gflops_per_sec'] or 0:9.1f} GFLOP/s ({row['gflop_per_step']:.2f} "
          f"GFLOP/step; untimed first calls {row['first_call_seconds']} s)")
  print(f"chain PSNR {chain['chain_psnr_db']:.2f} dB (input {chain['input_psnr_db']:.2f} "
        f"dB); export {chain['export_dir']} reload_ok={chain['reload_ok']}; "
        f"{results['replicas']} replica(s) on "
        f"{[d.get('device_name', d['name']) for d in results['devices']]}; "
        f"{results['wall_seconds']:.1f} s")
  benchlib.write_results(FLAGS.output_json, "accelerator_check", benchlib.flag_values(
      FLAGS, ["tiny", "image_size", "scale", "num_res_blocks", "filters",
              "discriminator_filters", "batch_size", "steps", "warmup_steps",
              "steps_per_loop", "examples", "eval_examples", "train_records",
              "val_records", "strategy", "policy", "jit"]), results)


if __name__ == "__main__":
  cli.run(main)
