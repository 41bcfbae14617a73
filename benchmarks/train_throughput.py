r"""Training throughput: the real loop next to a bare step, side by side in one run.

For each GAN role this measures, at the same size and from the same starting point:

  real run    `controller.run(experiment, step=step)`: records on disk -> tf.data
              pipeline -> the multi-step tf.function, with TensorBoard summaries
              (scalars and image grids), checkpoints and console progress at each
              --summary_every cadence, plus its start (lock, settings check, writers,
              the grid batch) and end (final checkpoint, evaluation, generator export)
  loop        the same run's loop alone, first chunk to last summary: what each step
              of a long run costs (the start and end, ~0.5 s here, are paid once)
  bare step   `GanStep.train(n)` on one in-memory batch repeated (no input pipeline,
              summaries, checkpoints or export)
  input step  `GanStep.train(n)` fed by the same records pipeline, no controller: splits
              the overhead into the input pipeline's (input / bare) and the
              controller's (loop / input)

and prints images/s of each; "ratio" in the JSON is loop / bare (in images/s),
"whole_run_ratio" run / bare. They take turns: a controller callback
(`training.actions.Callback`, no patching) follows every --turn_steps steps of the real
loop with as many steps of the other two, timed apart; a load change on a shared
machine therefore hits all sides alike, and only the ratios are meant to be compared across runs. Every GanStep is built
before any trains, and warmed up (tracing, a first checkpoint, summary and export, in
another folder) before it is timed; the timed run starts in a fresh model_dir as a new
run does. Ratios are given in wall time and in this process's CPU time (less sensitive
to other jobs; blind to waiting on disk).

  python benchmarks/train_throughput.py [--image_size=32 --scale=2 --batch_size=8 \
      --steps=300 --summary_every=100,10 --checkpoint_every=1000 \
      --output_json=results/bench/train_throughput.json]

Defaults are the RuntimeConfig cadence (summaries every 100 steps, checkpoints every 1000,
steps_per_loop 10), plus summaries every 10 steps for comparison.
"""

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

import dataclasses  # pylint: disable=g-bad-import-order
import os
import tempfile
import time

from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

import benchlib
from cdgan_tf import config as config_lib
from cdgan_tf.data import pipeline
from cdgan_tf.data import synthetic
from cdgan_tf.training import actions as actions_lib
from cdgan_tf.training import controller as controller_lib
from cdgan_tf.training import gan_step as gan_step_lib

_TRAIN = config_lib.RuntimeConfig()
flags.DEFINE_integer("image_size", 32, "Large image side.", lower_bound=2)
flags.DEFINE_integer("scale", 2, "Scale factor (a power of 2).", lower_bound=1)
flags.DEFINE_integer("batch_size", 8, "Global batch size.", lower_bound=1)
flags.DEFINE_integer("steps", 300, "Timed steps of each measurement.", lower_bound=1)
flags.DEFINE_integer("warmup", 10, "Untimed steps before each measurement.", lower_bound=1)
flags.DEFINE_integer("num_res_blocks", 16, "Generator residual blocks.", lower_bound=0)
flags.DEFINE_integer("filters", 64, "Generator filters.", lower_bound=1)
flags.DEFINE_integer("discriminator_filters", 64, "Discriminator filters of the first "
                     "conv.", lower_bound=1)
flags.DEFINE_list("summary_every", [str(_TRAIN.summary_every), "10"],
                  "Summary cadences of the real loop, one measurement each.")
flags.DEFINE_integer("checkpoint_every", _TRAIN.checkpoint_every, "Checkpoint cadence.",
                     lower_bound=1)
flags.DEFINE_integer("steps_per_loop", _TRAIN.steps_per_loop, "Steps per tf.function "
                     "call.", lower_bound=1)
flags.DEFINE_integer("turn_steps", _TRAIN.steps_per_loop, "Real-loop steps between two "
                     "turns of the reference steps (short turns: a load change on a "
                     "shared machine hits all sides alike).", lower_bound=1)
flags.DEFINE_list("roles", ["sub", "super"], "GAN roles to measure.")
flags.DEFINE_integer("examples", 256, "Synthetic training examples written to records.",
                     lower_bound=1)
flags.DEFINE_string("feature_extractor", "", "Feature network of the feature loss "
                    "(a classifier spec, e.g. a .tflite embedding extractor); \"\": none.")
flags.DEFINE_float("feature_weight", 1.0, "Weight of the feature loss (with "
                   "--feature_extractor).", lower_bound=0.0)
flags.DEFINE_integer("matmul_size", 2048, "Side of the peak-measuring matmul.",
                     lower_bound=64)
flags.DEFINE_list("bare_variants", [], "Bare-step rows only (no controller; with "
                  "--bare_steps): generator sizes as BLOCKSxFILTERS, e.g. 8x32,16x64, "
                  "each without and (with --bare_feature_extractor) with the feature "
                  "loss; the GFLOP/s of GanStep.train next to the matmul peak, same run.")
flags.DEFINE_string("bare_feature_extractor", "", "Feature network of the bare rows' "
                    "feature-loss side (a classifier spec); \"\": those rows only "
                    "without.")
flags.DEFINE_float("bare_feature_weight", 0.2, "Feature-loss weight of those rows.",
                   lower_bound=0.0)
flags.DEFINE_integer("bare_steps", 2, "Timed steps per round of a bare row.",
                     lower_bound=1)
flags.DEFINE_integer("bare_repeats", 2, "Interleaved rounds (step, matmul) of a bare row.",
                     lower_bound=1)
flags.DEFINE_integer("bare_batch_size", 0, "Batch of the bare rows; 0: --batch_size.",
                     lower_bound=0)
flags.DEFINE_bool("profile", False, "With --bare_variants: also the top ops by time of "
                  "one step of each bare row (benchlib.gan_step_profile).")
flags.DEFINE_string("output_json", "", "Write the figures to this JSON file.")
FLAGS = flags.FLAGS


def _experiment(role: str, records: str, model_dir: str,
                summary_every: int) -> config_lib.ExperimentConfig:
  return config_lib.from_flat(
      **benchlib.flag_values(FLAGS, benchlib.SIZE_FLAGS), role=role,
      train_records=records, train_steps=FLAGS.warmup + FLAGS.steps,
      feature_weight=FLAGS.feature_weight if FLAGS.feature_extractor else 0.0,
      feature_extractor=FLAGS.feature_extractor, model_dir=model_dir,
      steps_per_loop=FLAGS.steps_per_loop, summary_every=summary_every,
      checkpoint_every=FLAGS.checkpoint_every)


class _Tandem(actions_lib.Callback):
  """Runs reference steps in turns with the real loop, timing each apart.

  A controller callback (`actions.Callback`): after every --turn_steps real steps (the
  controller's chunks add up) each reference step trains as many steps, and the rest
  at the end, so a load change on the machine hits all sides alike. Each turn is one
  `train` call of the owed steps. The input pipelines keep prefetching during the
  other sides' turns (at most their prefetch buffers, a few batches), for the real
  loop and the input step alike.

  Args:
    references: name -> GanStep trained in turns with the real one.
    turn_steps: Real steps per turn.
  """

  def __init__(self, references: dict, turn_steps: int):
    self._references, self._turn = references, turn_steps
    self.seconds = {name: 0.0 for name in references}
    self.cpu = {name: 0.0 for name in references}
    self.steps = self._owed = 0
    self.loop_start = self.loop_end = None  # (wall, CPU) clocks.
    self.references_at_end = (0.0, 0.0)

  def _clocks(self):
    return time.perf_counter(), time.process_time()

  def on_train_begin(self, step_number: int) -> None:
    self.loop_start = self._clocks()

  def on_chunk_begin(self, step_number: int, num_steps: int) -> None:
    self._chunk = num_steps

  def on_chunk_trained(self, step_number: int) -> None:
    self.steps += self._chunk
    self._owed += self._chunk
    if self._owed >= self._turn:
      self.settle()

  def on_chunk_end(self, step_number: int) -> None:
    """After every chunk's summaries, checkpoint and actions: the loop so far ends here."""
    self.loop_end = self._clocks()
    self.references_at_end = (sum(self.seconds.values()), sum(self.cpu.values()))

  def loop_times(self):
    """(wall s, CPU s) of the controller's loop (first chunk to last summary), the
    reference turns taken inside it excluded."""
    return tuple(end - start - refs for end, start, refs in
                 zip(self.loop_end, self.loop_start, self.references_at_end))

  def settle(self) -> None:
    """Trains each reference step for the steps owed so far."""
    if not self._owed:
      return
    for name, reference in self._references.items():
      wall, cpu = time.perf_counter(), time.process_time()
      reference.train(self._owed)
      self.seconds[name] += time.perf_counter() - wall
      self.cpu[name] += time.process_time() - cpu
    self._owed = 0


def _timed_run(step: gan_step_lib.GanStep, references: dict, model_dir: str) -> dict:
  """{name: (wall s, CPU s)} over --steps steps, taken in turns, of

    real   controller.run() as a whole: the start (lock, settings check, writers, the
           grid batch), the loop, the final checkpoint, evaluation and export
    loop   its loop alone: every chunk, summary, periodic checkpoint and progress line
           from the first chunk to the last summary (a long run's cost per step)
    bare, input   as many steps of each reference
  """
  # A fresh model_dir: the timed run starts as a new run does (nothing to restore).
  experiment = dataclasses.replace(
      step.experiment, runtime=dataclasses.replace(step.experiment.runtime,
                                                   model_dir=model_dir))
  tandem = _Tandem(references, FLAGS.turn_steps)
  wall, cpu = time.perf_counter(), time.process_time()
  controller_lib.run(experiment, step=step, callbacks=[tandem])
  tandem.settle()
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  assert tandem.steps == FLAGS.steps, tandem.steps
  times = {name: (tandem.seconds[name], tandem.cpu[name]) for name in references}
  times["real"] = (wall - sum(tandem.seconds.values()), cpu - sum(tandem.cpu.values()))
  times["loop"] = tandem.loop_times()
  return times


def measure(role: str, records: str, root: str) -> list:
  """Images/s of the real loop at each summary cadence, of the bare step and of the
  step fed by the input pipeline (no controller), side by side.

  Every GanStep is built before any of them trains: a step built after another one had
  traced and trained ran 10-20 % faster than that one here (memory placement), which
  would bias the ratio by as much as the overhead being measured.
  """
  cadences = [int(c) for c in FLAGS.summary_every]
  strategy = tf.distribute.get_strategy()
  base = _experiment(role, records, os.path.join(root, f"{role}_bare"), cadences[0])
  batch = next(iter(pipeline.train_dataset(base.data, role)))
  references = {
      "bare": gan_step_lib.GanStep(
          base, strategy,
          train_dataset_fn=lambda ctx: tf.data.Dataset.from_tensors(batch).repeat()),
      "input": gan_step_lib.GanStep(base, strategy)}
  reals = {c: gan_step_lib.GanStep(_experiment(
      role, records, os.path.join(root, f"{role}_warmup{c}"), c), strategy)
           for c in cadences}
  for reference in references.values():
    reference.train(FLAGS.warmup)
  for step in reals.values():
    # Traces the loop and the grid, writes a first summary, checkpoint and export.
    controller_lib.run(dataclasses.replace(step.experiment, train=dataclasses.replace(
        step.experiment.train, train_steps=FLAGS.warmup)), step=step)
  images = FLAGS.steps * FLAGS.batch_size
  flops = benchlib.gan_step_flops(references["bare"], batch)
  matmul, matmul_flops = benchlib.matmul_runner(FLAGS.matmul_size)
  matmul_seconds = []
  rows = []
  for cadence, step in reals.items():
    matmul_seconds.append(benchlib.interleaved_seconds({"m": matmul}, 3)["m"]["median"])
    t = _timed_run(step, references, os.path.join(root, f"{role}_every{cadence}"))
    (real, real_cpu), (bare, bare_cpu), (fed, fed_cpu) = t["real"], t["bare"], t["input"]
    loop, loop_cpu = t["loop"]
    rows.append({"role": role, "summary_every": cadence,
                 "checkpoint_every": FLAGS.checkpoint_every,
                 "loop_images_per_sec": images / loop,
                 "real_images_per_sec": images / real,
                 "bare_images_per_sec": images / bare,
                 "input_step_images_per_sec": images / fed,
                 "ratio": bare / loop, "cpu_ratio": bare_cpu / loop_cpu,
                 "whole_run_ratio": bare / real, "whole_run_cpu_ratio": bare_cpu / real_cpu,
                 "start_and_end_seconds": real - loop,
                 "input_step_over_bare": bare / fed, "real_over_input_step": fed / loop,
                 "seconds": {k: v[0] for k, v in t.items()},
                 "cpu_seconds": {k: v[1] for k, v in t.items()}})
  matmul_seconds.append(benchlib.interleaved_seconds({"m": matmul}, 3)["m"]["median"])
  # The peak before and after each timed run (the GAN step cannot share its rounds).
  _add_flops(rows, flops, matmul_flops / float(np.median(matmul_seconds)))
  for row in rows:
    row["feature_loss"] = bool(FLAGS.feature_extractor)
  return rows


def _add_flops(rows: list, flops: int, peak: float) -> None:
  for row in rows:
    per_image = flops / FLAGS.batch_size
    row.update({"gflop_per_step": flops / 1e9,
                "matmul_float32_peak_gflops_per_sec": peak / 1e9,
                "bare_gflops_per_sec": per_image * row["bare_images_per_sec"] / 1e9,
                "loop_gflops_per_sec": per_image * row["loop_images_per_sec"] / 1e9,
                "bare_fraction_of_float32_peak":
                    per_image * row["bare_images_per_sec"] / peak,
                "loop_fraction_of_float32_peak":
                    per_image * row["loop_images_per_sec"] / peak})


def _variant(text: str):
  try:
    blocks, filters = (int(v) for v in text.lower().split("x"))
  except ValueError:
    raise cli.UsageError(f"--bare_variants: {text!r} is not BLOCKSxFILTERS (e.g. 16x64)"
                         ) from None
  return blocks, filters


def bare_rows(role: str, records: str, root: str) -> list:
  """GFLOP/s of the bare step (`GanStep.train` on one in-memory batch) of each
  --bare_variants size, without and with the feature loss, in rounds with the matmul
  peak; the top ops by time with --profile."""
  strategy = tf.distribute.get_strategy()
  batch_size = FLAGS.bare_batch_size or FLAGS.batch_size
  rows = []
  matmul, matmul_flops = benchlib.matmul_runner(FLAGS.matmul_size)
  features = [""] + ([FLAGS.bare_feature_extractor] if FLAGS.bare_feature_extractor
                     else [])
  for text in FLAGS.bare_variants:
    blocks, filters = _variant(text)
    for feature in features:
      base = _experiment(role, records, os.path.join(root, f"{role}_{text}_bare"), 100)
      experiment = dataclasses.replace(
          base, model=dataclasses.replace(base.model, num_res_blocks=blocks,
                                          filters=filters),
          loss=dataclasses.replace(base.loss, feature_extractor=feature,
                                   feature_weight=FLAGS.bare_feature_weight if feature
                                   else 0.0),
          data=dataclasses.replace(base.data, batch_size=batch_size))
      batch = next(iter(pipeline.build_dataset(experiment.data, role, training=True)))
      step = gan_step_lib.GanStep(
          experiment, strategy,
          train_dataset_fn=lambda ctx, b=batch: tf.data.Dataset.from_tensors(b).repeat())
      step.train(1)  # Tracing.
      seconds = benchlib.interleaved_seconds(
          {"matmul": matmul, "step": lambda s=step: s.train(FLAGS.bare_steps)},
          FLAGS.bare_repeats, warmup=0)
      flops = benchlib.gan_step_flops(step, batch)
      peak = matmul_flops / seconds["matmul"]["median"]
      per_sec = flops * FLAGS.bare_steps / seconds["step"]["median"]
      row = {"role": role, "variant": text, "num_res_blocks": blocks, "filters": filters,
             "feature_loss": bool(feature), "batch_size": batch_size,
             "image_size": FLAGS.image_size, "scale": FLAGS.scale,
             "gflop_per_step": flops / 1e9,
             "seconds_per_step": seconds["step"]["median"] / FLAGS.bare_steps,
             "bare_images_per_sec": batch_size * FLAGS.bare_steps /
                                    seconds["step"]["median"],
             "bare_gflops_per_sec": per_sec / 1e9,
             "matmul_float32_peak_gflops_per_sec": peak / 1e9,
             "bare_fraction_of_float32_peak": per_sec / peak}
      print(f"{role:5} {text:6} feature loss {'on ' if feature else 'off'}: "
            f"{row['gflop_per_step']:.1f} GFLOP/step, {row['seconds_per_step']:.2f} s/step, "
            f"{row['bare_gflops_per_sec']:.1f} GFLOP/s = "
            f"{100 * row['bare_fraction_of_float32_peak']:.0f} % of the "
            f"{peak / 1e9:.0f} GFLOP/s matmul", flush=True)
      if FLAGS.profile:
        row["profile"] = benchlib.gan_step_profile(step, batch)
        benchlib.print_profile(f"{role} {text} feature {bool(feature)}", row["profile"])
      rows.append(row)
      del step
  return rows


def _print_table(rows: list) -> None:
  print(f"{'role':6} {'summary':>8} {'loop':>7} {'run':>7} {'bare':>7} {'input':>7} "
        f"{'loop/bare':>10} {'(CPU)':>6} {'run/bare':>9} {'input/bare':>10} "
        f"{'loop/input':>10} {'start+end s':>11}")
  for row in rows:
    print(f"{row['role']:6} {row['summary_every']:8d} {row['loop_images_per_sec']:7.1f} "
          f"{row['real_images_per_sec']:7.1f} {row['bare_images_per_sec']:7.1f} "
          f"{row['input_step_images_per_sec']:7.1f} {row['ratio']:10.3f} "
          f"{row['cpu_ratio']:6.3f} {row['whole_run_ratio']:9.3f} "
          f"{row['input_step_over_bare']:10.3f} {row['real_over_input_step']:10.3f} "
          f"{row['start_and_end_seconds']:11.2f}")
  for row in rows:
    print(f"{row['role']:6} every {row['summary_every']}: {row['gflop_per_step']:.2f} "
          f"GFLOP/step; bare {row['bare_gflops_per_sec']:.1f} GFLOP/s "
          f"({100 * row['bare_fraction_of_float32_peak']:.0f} % of the "
          f"{row['matmul_float32_peak_gflops_per_sec']:.0f} GFLOP/s matmul peak), loop "
          f"{row['loop_gflops_per_sec']:.1f} GFLOP/s")
  print("images/s; loop: the controller's loop (chunks, summaries, checkpoints, progress); "
        "run: controller.run() with its start and end (grid batch, final checkpoint, "
        "export); bare: GanStep.train on one batch; input: GanStep.train fed by the "
        "records pipeline, no controller")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # The controller's progress lines.
  for text in FLAGS.bare_variants:
    _variant(text)
  with tempfile.TemporaryDirectory() as tmp:
    records = synthetic.write_records(
        tmp, "train", synthetic.noise_pairs(FLAGS.image_size, FLAGS.examples, seed=0))
    if FLAGS.bare_variants:
      rows = [row for role in FLAGS.roles for row in bare_rows(role, records, tmp)]
      benchlib.write_results(FLAGS.output_json, "train_throughput", benchlib.flag_values(
          FLAGS, ["image_size", "scale", "batch_size", "roles", "bare_variants",
                  "bare_feature_extractor", "bare_feature_weight", "bare_steps",
                  "bare_repeats", "bare_batch_size", "profile", "matmul_size"]), rows)
      return
    rows = [row for role in FLAGS.roles for row in measure(role, records, tmp)]
  print(f"\nimage_size={FLAGS.image_size} scale={FLAGS.scale} batch={FLAGS.batch_size} "
        f"blocks={FLAGS.num_res_blocks} filters={FLAGS.filters} steps={FLAGS.steps} "
        f"checkpoint_every={FLAGS.checkpoint_every} (CPU threads: {os.cpu_count()})")
  _print_table(rows)
  benchlib.write_results(FLAGS.output_json, "train_throughput", benchlib.flag_values(
      FLAGS, ["image_size", "scale", "batch_size", "steps", "warmup", "num_res_blocks",
              "filters", "discriminator_filters", "summary_every", "checkpoint_every",
              "steps_per_loop", "turn_steps", "roles", "examples", "feature_extractor",
              "feature_weight", "matmul_size"]), rows)


if __name__ == "__main__":
  cli.run(main)
