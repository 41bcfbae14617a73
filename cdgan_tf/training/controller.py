"""The outer training loop: chunks, checkpoints, train summaries, and actions.

The "controller" half of the orbit split (`orbit.Controller`): every dependency is
handed in (the `GanStep`, a `tf.train.CheckpointManager`, the summary folder, the
cadences, the actions and callbacks), and `Controller.train(total_steps)` calls
`GanStep.train(n)` in chunks that end on every cadence boundary. After each chunk it
writes the train scalars and a progress line (every `summary_every` steps), checkpoints
(every `checkpoint_every`), and runs the actions due (`actions`: image summaries,
validation, export); on SIGTERM / SIGINT it saves the step and raises
`interrupts.Interrupted`.

`run(experiment)` assembles one from an `ExperimentConfig` (its `runtime` section:
model_dir, cadences, strategy, precision) and runs it to the end. Layout of `model_dir`
(the same for both GAN roles):

  checkpoints/            tf.train.CheckpointManager: step, both models, both optimizers
  train/  eval/           TensorBoard event files
  export/generator.keras  the trained generator, plus export/generator.json
                          (`cdgan_tf.models.generator_files`)
  config.json             the ExperimentConfig the run started with, and
  config_history.json     every later change of settings (`resume`)
  eval_metrics.json       the last validation metrics and their step
  .lock                   held while a job trains in the folder (`common.locks`)

Rerunning the same command resumes from the newest checkpoint (step, weights and
optimizer slots); a finished run says so and exits.

Names: `step` is always the `GanStep`; integer steps are `step_number`, `start`,
`total_steps`.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Dict, Optional, Sequence

from absl import logging
import tensorflow as tf

from cdgan_tf import config as config_lib
from cdgan_tf.common import errors
from cdgan_tf.common import files
from cdgan_tf.common import interrupts
from cdgan_tf.common import locks
from cdgan_tf.models import generator_files
from cdgan_tf.training import actions as actions_lib
from cdgan_tf.training import checkpoints
from cdgan_tf.training import distribute
from cdgan_tf.training import gan_step as gan_step_lib
from cdgan_tf.training import resume


class Controller:
  """Drives a `GanStep` to a step count with checkpoints, summaries and actions.

  Args:
    step: The GAN step (models, optimizers, compiled loop); trains from the step its
      counter holds (restore it first: `restore`).
    checkpoint_manager: Saves `step`'s state (its `step_counter` is `step.step`).
    summary_dir: Where the train scalars go (TensorBoard); "" for none (non-chief).
    steps_per_loop: The longest chunk (steps in one `GanStep.train` call).
    summary_every: Steps between train scalars and progress lines (and at the end).
    checkpoint_every: Steps between checkpoints (on multiples, and at the end).
    actions: `actions.Action`s, run in order after the chunk that ends on their
      cadence, and at the end (`at_end`), with the train writer as default writer.
    callbacks: `actions.Callback`s, told of every chunk (timing hooks).
  """

  def __init__(self, *, step: gan_step_lib.GanStep,
               checkpoint_manager: tf.train.CheckpointManager, summary_dir: str,
               steps_per_loop: int, summary_every: int, checkpoint_every: int,
               actions: Sequence[actions_lib.Action] = (),
               callbacks: Sequence[actions_lib.Callback] = ()):
    for name, value in (("steps_per_loop", steps_per_loop),
                        ("summary_every", summary_every),
                        ("checkpoint_every", checkpoint_every)):
      if value < 1:
        raise errors.UsageError(f"{name} must be at least 1, got {value}")
    self.step = step
    self.checkpoint_manager = checkpoint_manager
    self.summary_dir = summary_dir
    self.steps_per_loop = int(steps_per_loop)
    self.summary_every = int(summary_every)
    self.checkpoint_every = int(checkpoint_every)
    self.actions = list(actions)
    self.callbacks = list(callbacks)
    self._writer = None

  @property
  def step_number(self) -> int:
    return int(self.step.step.numpy())

  @property
  def writer(self) -> tf.summary.SummaryWriter:
    """The train summary writer (a no-op one without `summary_dir`), made on first use."""
    if self._writer is None:
      self._writer = (tf.summary.create_file_writer(self.summary_dir) if self.summary_dir
                      else tf.summary.create_noop_writer())
    return self._writer

  def _checkpoint_path(self, step_number: int) -> str:
    return os.path.join(self.checkpoint_manager.directory, f"ckpt-{step_number}")

  def save_unless_saved(self) -> None:
    """Checkpoints the current step unless the newest checkpoint is of it."""
    step_number = self.step_number
    if self.checkpoint_manager.latest_checkpoint != self._checkpoint_path(step_number):
      self.checkpoint_manager.save(checkpoint_number=step_number)

  # ----------------------------------------------------------------- the loop
  def _chunk_size(self, step_number: int, total_steps: int) -> int:
    """The steps until the next cadence boundary, the end, or steps_per_loop."""
    cadences = [self.summary_every, self.checkpoint_every] + [
        a.every for a in self.actions if a.every]
    return min([self.steps_per_loop, total_steps - step_number] +
               [c - step_number % c for c in cadences])

  def train(self, total_steps: int) -> int:
    """Trains from the current step to `total_steps`; returns the step reached.

    After the last chunk the step is checkpointed and the `at_end` actions run. On
    SIGTERM / SIGINT the current step is saved and `interrupts.Interrupted` raised.
    """
    start = step_number = self.step_number
    for callback in self.callbacks:
      callback.on_train_begin(step_number)
    run_start = time.time()
    window_start, window_steps = time.time(), 0
    ran_at = {}  # id(action) -> the last step it ran at.
    with interrupts.StopRequests() as stop:
      while step_number < total_steps:
        num = self._chunk_size(step_number, total_steps)
        for callback in self.callbacks:
          callback.on_chunk_begin(step_number, num)
        self.step.train(num)
        step_number += num
        window_steps += num
        for callback in self.callbacks:
          callback.on_chunk_trained(step_number)
        if step_number % self.summary_every == 0 or step_number == total_steps:
          rate = window_steps * self.step.global_batch_size / max(
              time.time() - window_start, 1e-9)
          means = self.step.take_metrics()
          self._write_scalars(step_number, means, rate)
          self._log_progress(step_number, start, total_steps, run_start, rate, means)
          window_start, window_steps = time.time(), 0
        if step_number % self.checkpoint_every == 0:
          self.checkpoint_manager.save(checkpoint_number=step_number)
        with self.writer.as_default(step=step_number):
          for action in self.actions:
            if action.every and step_number % action.every == 0:
              action(step_number)
              ran_at[id(action)] = step_number
        for callback in self.callbacks:
          callback.on_chunk_end(step_number)
        if stop.requested and step_number < total_steps:
          self.save_unless_saved()
          self.writer.flush()
          stop.raise_if_requested(
              f"saved {self._checkpoint_path(step_number)} at step {step_number} of "
              f"{total_steps}; rerun the same command to resume from it")
    self.save_unless_saved()
    with self.writer.as_default(step=step_number):
      for action in self.actions:
        if action.at_end and ran_at.get(id(action)) != step_number:
          action(step_number)
    self.writer.flush()
    return step_number

  # ----------------------------------------------------------------- summaries
  def _write_scalars(self, step_number: int, means: Dict[str, float],
                     images_per_sec: float) -> None:
    with self.writer.as_default(step=step_number):
      for name, value in means.items():
        tf.summary.scalar(f"loss/{name}" if name != "psnr" else "metrics/psnr", value)
      tf.summary.scalar("learning_rate", self.step.learning_rate)
      tf.summary.scalar("images_per_sec", images_per_sec)

  def _log_progress(self, step_number: int, start: int, total_steps: int,
                    run_start: float, rate: float, means: Dict[str, float]) -> None:
    eta = (time.time() - run_start) / max(step_number - start, 1) * (
        total_steps - step_number)
    logging.info(
        "step %d/%d (%.0f%%)  g=%.4f (content %.4f, adv %.4f)  d=%.4f  psnr=%.2f dB  "
        "%.1f img/s  ETA %s", step_number, total_steps, 100.0 * step_number / total_steps,
        means.get("generator_total", 0.0), means.get("generator_content", 0.0),
        means.get("generator_adversarial", 0.0), means.get("discriminator", 0.0),
        means.get("psnr", 0.0), rate, time.strftime("%H:%M:%S", time.gmtime(eta)))


def restore(step: gan_step_lib.GanStep, checkpoint_dir: str, keep_checkpoints: int = 3,
            restart: bool = False) -> tf.train.CheckpointManager:
  """Restores `step` from the newest checkpoint that reads back whole (`checkpoints`),
  then returns the manager that saves its next ones.

  Args:
    step: What to restore into (`GanStep.checkpoint_items`).
    checkpoint_dir: The checkpoints folder.
    keep_checkpoints: How many of the newest checkpoints are kept (older ones are
      deleted); more than one keeps a fallback when the newest is damaged.
    restart: Train from step 0 although the folder holds checkpoints (they are moved
      aside, see `checkpoints.restore_newest`); without it such a folder resumes, and
      one whose checkpoints are all damaged is refused.

  Raises:
    checkpoints.CheckpointError: checkpoints exist but none reads back whole (and
      not `restart`).
    ValueError: keep_checkpoints < 1, or the checkpoint does not fit these models.
  """
  if keep_checkpoints < 1:
    raise errors.UsageError(f"--keep_checkpoints must be at least 1, got {keep_checkpoints}")
  checkpoint = tf.train.Checkpoint(**step.checkpoint_items)
  try:
    checkpoints.restore_newest(checkpoint, checkpoint_dir, restart)
  except checkpoints.CheckpointError:
    raise
  except (ValueError, AssertionError, tf.errors.InvalidArgumentError) as e:
    raise errors.UsageError(f"the newest checkpoint in {checkpoint_dir} does not fit these "
                            "models (a run of other sizes?); use a new --model_dir "
                            f"({type(e).__name__})") from e
  # Made after the restore: it reads the state file restore_newest may have repaired.
  return tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=keep_checkpoints,
                                    step_counter=step.step)


def run(experiment: config_lib.ExperimentConfig,
        strategy: Optional[tf.distribute.Strategy] = None,
        allow_config_change: bool = False, restart: bool = False,
        keep_checkpoints: int = 3, step: Optional[gan_step_lib.GanStep] = None,
        actions: Sequence[actions_lib.Action] = (),
        callbacks: Sequence[actions_lib.Callback] = ()) -> Dict[str, float]:
  """Trains (or resumes) one GAN to the end in `experiment.runtime.model_dir`.

  The chief holds a lock on model_dir for the whole run, checks the settings against
  the run's before restoring (`resume`), and removes an interrupted run's leftovers.

  Args:
    experiment: The configuration (`runtime`: model_dir, cadences, strategy).
    strategy: An existing strategy; by default made from experiment.runtime.strategy
      before any other TensorFlow op (a multi_worker requirement). Unused with `step`.
    allow_config_change: Resume even when non-shape settings changed (recorded in
      config_history.json; see `resume`).
    restart, keep_checkpoints: See `restore`.
    step: An existing GanStep of `experiment` (default: a new one).
    actions: More actions, after the default ones (image grids, validation, export).
    callbacks: Chunk callbacks (`actions.Callback`), e.g. a benchmark's timer.

  Returns:
    The final validation metrics ({} without a val split or when already finished).
  """
  runtime = experiment.runtime
  if not runtime.model_dir:
    raise errors.UsageError("model_dir must be set")
  if step is None:
    if strategy is None:
      strategy = distribute.make_strategy(runtime.strategy, runtime.tpu)
    step = gan_step_lib.GanStep(experiment, strategy)
  model_dir = runtime.model_dir
  is_chief = distribute.is_chief(step.strategy)
  own_dir = distribute.worker_dir(model_dir, step.strategy)
  checkpoint_dir = os.path.join(own_dir, "checkpoints")
  total_steps = gan_step_lib.total_steps(experiment)
  guard = (locks.FolderLock(model_dir, f"training of the {step.role.value} GAN")
           if is_chief else contextlib.nullcontext())
  with guard:
    if is_chief:
      for folder in (model_dir, checkpoint_dir):
        files.check_writable(folder)  # Before the work, not at the first save.
      resume.clean_leftovers(model_dir)
      latest = 0 if restart else checkpoints.newest_step(checkpoint_dir)
      resume.check_and_record(model_dir, experiment, latest, allow_config_change)
    manager = restore(step, checkpoint_dir, keep_checkpoints, restart)
    start = int(step.step.numpy())
    if is_chief:
      for folder in ("train", "eval"):
        resume.trim_events(os.path.join(model_dir, folder), start)
    if start >= total_steps:
      logging.info("Training already finished: step %d of %d in %s", start, total_steps,
                   model_dir)
      export = actions_lib.ExportGenerator(
          step, experiment, os.path.join(model_dir, generator_files.EXPORT_DIR))
      if is_chief and not tf.io.gfile.exists(export.export_path):
        export(start)  # The run ended before its export.
      return {}
    all_actions = actions_lib.default_actions(
        step, experiment, is_chief, own_dir=None if is_chief else own_dir)
    evaluate = next(a for a in all_actions if isinstance(a, actions_lib.Evaluate))
    controller = Controller(
        step=step, checkpoint_manager=manager,
        summary_dir=os.path.join(model_dir, "train") if is_chief else "",
        steps_per_loop=runtime.steps_per_loop, summary_every=runtime.summary_every,
        checkpoint_every=runtime.checkpoint_every, actions=all_actions + list(actions),
        callbacks=callbacks)
    logging.info("Training %s GAN from step %d to %d (global batch %d, %d replica(s))",
                 step.role.value, start, total_steps, step.global_batch_size,
                 step.strategy.num_replicas_in_sync)
    run_start = time.time()
    reached = controller.train(total_steps)
    logging.info("Finished %s GAN at step %d in %.1f s (weights fingerprint %s)",
                 step.role.value, reached, time.time() - run_start,
                 step.weights_fingerprint())
    return evaluate.last_metrics
