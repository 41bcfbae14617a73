"""The outer training loop: checkpoints, summaries, evaluation and export cadence.

The "controller" half of the orbit split (`orbit.Controller`): it calls
`GanStep.train(n)` in chunks that end on summary boundaries, and around those calls it
checkpoints, writes TensorBoard summaries, evaluates, prints progress and finally exports
the generator. Layout of `model_dir` (the same for both GAN roles):

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
"""

from __future__ import annotations

import os
import time
from typing import Dict, Optional

from absl import logging
import tensorflow as tf

from cdgan_tf import config as config_lib
from cdgan_tf.common import files
from cdgan_tf.common import interrupts
from cdgan_tf.common import locks
from cdgan_tf.models import generator_files
from cdgan_tf.models import generators
from cdgan_tf.training import checkpoints
from cdgan_tf.training import distribute
from cdgan_tf.training import gan_step as gan_step_lib
from cdgan_tf.training import resume


class Controller:
  """Drives a `GanStep` to the end of the run with checkpoints, summaries and export.

  Args:
    step: The GAN step (models, optimizers, compiled loop).
    total_steps: Where the run ends.
    allow_config_change: Resume even when non-shape settings changed (recorded in
      config_history.json; see `resume`).
    restart: Train from step 0 although model_dir holds checkpoints (they are moved
      aside, see `checkpoints.restore_newest`); without it such a folder resumes, and
      one whose checkpoints are all damaged is refused.
    keep_checkpoints: How many of the newest checkpoints are kept (older ones are
      deleted); more than one keeps a fallback when the newest is damaged.
  """

  def __init__(self, step: gan_step_lib.GanStep, total_steps: int,
               allow_config_change: bool = False, restart: bool = False,
               keep_checkpoints: int = 3):
    self.gan = step
    self.experiment = step.experiment
    self.train_config = step.experiment.train
    self.total_steps = int(total_steps)
    self.model_dir = self.train_config.model_dir
    if not self.model_dir:
      raise ValueError("model_dir must be set")
    self.allow_config_change = allow_config_change
    self.is_chief = distribute.is_chief(step.strategy)
    self._own_dir = distribute.worker_dir(self.model_dir, step.strategy)
    self.restart = restart
    if keep_checkpoints < 1:
      raise ValueError(f"--keep_checkpoints must be at least 1, got {keep_checkpoints}")
    self.keep_checkpoints = int(keep_checkpoints)
    self.checkpoint = tf.train.Checkpoint(**step.checkpoint_items)
    self.checkpoint_dir = os.path.join(self._own_dir, "checkpoints")
    self.checkpoint_manager = self._manager()

  def _manager(self) -> tf.train.CheckpointManager:
    return tf.train.CheckpointManager(self.checkpoint, self.checkpoint_dir,
                                      max_to_keep=self.keep_checkpoints,
                                      step_counter=self.gan.step)

  @property
  def export_dir(self) -> str:
    return os.path.join(self.model_dir, generator_files.EXPORT_DIR)

  @property
  def export_path(self) -> str:
    return os.path.join(self.export_dir, generator_files.GENERATOR_FILE)

  @property
  def current_step(self) -> int:
    return int(self.gan.step.numpy())

  def restore_or_initialize(self) -> int:
    """Restores the newest checkpoint that reads back whole (`checkpoints`). Returns
    the step.

    Raises:
      checkpoints.CheckpointError: checkpoints exist but none reads back whole (and
        not `restart`).
      ValueError: the checkpoint does not fit these models (a run of other sizes).
    """
    try:
      checkpoints.restore_newest(self.checkpoint, self.checkpoint_dir, self.restart)
    except checkpoints.CheckpointError:
      raise
    except (ValueError, AssertionError, tf.errors.InvalidArgumentError) as e:
      raise ValueError(f"the newest checkpoint in {self.checkpoint_dir} does not fit these "
                       "models (a run of other sizes?); use a new --model_dir "
                       f"({type(e).__name__})") from e
    self.checkpoint_manager = self._manager()  # Reads the state file just repaired.
    return self.current_step

  def _checkpoint_path(self, step: int) -> str:
    return os.path.join(self.checkpoint_manager.directory, f"ckpt-{step}")

  def _latest_step(self) -> int:
    """The step of the newest checkpoint, without restoring it (0 without one)."""
    return 0 if self.restart else checkpoints.newest_step(self.checkpoint_dir)

  # ----------------------------------------------------------------- the run
  def run(self) -> Dict[str, float]:
    """Runs (or resumes) training to `total_steps`; returns the final eval metrics.

    The chief holds a lock on model_dir for the whole run, checks the settings against
    the run's before restoring, and removes an interrupted run's leftovers.
    """
    if not self.is_chief:
      return self._run()
    with locks.FolderLock(self.model_dir, f"training of the {self.gan.role.value} GAN"):
      for folder in (self.model_dir, self.checkpoint_dir):
        files.check_writable(folder)  # Before the work, not at the first save.
      resume.clean_leftovers(self.model_dir)
      resume.check_and_record(self.model_dir, self.experiment, self._latest_step(),
                              self.allow_config_change)
      return self._run()

  def _run(self) -> Dict[str, float]:
    start = self.restore_or_initialize()
    if self.is_chief:
      for folder in ("train", "eval"):
        resume.trim_events(os.path.join(self.model_dir, folder), start)
    if start >= self.total_steps:
      logging.info("Training already finished: step %d of %d in %s", start,
                   self.total_steps, self.model_dir)
      if self.is_chief and not tf.io.gfile.exists(self.export_path):
        self.export()
      return {}
    train_writer, eval_writer = self._writers()
    grid_batch = self.gan.first_batch() if self.is_chief else None
    logging.info("Training %s GAN from step %d to %d (global batch %d, %d replica(s))",
                 self.gan.role.value, start, self.total_steps, self.gan.global_batch_size,
                 self.gan.strategy.num_replicas_in_sync)
    config = self.train_config
    run_start = time.time()
    with interrupts.StopRequests() as stop:
      step, last_eval = self._loop(start, start, run_start, stop, train_writer, eval_writer,
                                   grid_batch)
    self._save_unless_saved(step)
    if not (config.eval_every and step % config.eval_every == 0):
      last_eval = self._run_eval(eval_writer, step)
    train_writer.flush()
    eval_writer.flush()
    self._finish()
    logging.info("Finished %s GAN at step %d in %.1f s (weights fingerprint %s)",
                 self.gan.role.value, step, time.time() - run_start,
                 self.gan.weights_fingerprint())
    return last_eval

  def _loop(self, step, start, run_start, stop, train_writer, eval_writer, grid_batch):
    """Trains from `step` to the end; on SIGTERM / SIGINT saves the step and raises
    `interrupts.Interrupted`. Returns (step, last eval metrics)."""
    config = self.train_config
    last_eval = {}
    window_start, window_steps = time.time(), 0
    while step < self.total_steps:
      # Chunks end on every multiple of the summary, checkpoint and eval cadences.
      cadences = [c for c in (config.summary_every, config.checkpoint_every,
                              config.eval_every) if c]
      num = min([config.steps_per_loop, self.total_steps - step] +
                [c - step % c for c in cadences])
      self.gan.train(num)
      step += num
      window_steps += num
      if step % config.summary_every == 0 or step == self.total_steps:
        rate = window_steps * self.gan.global_batch_size / max(time.time() - window_start,
                                                               1e-9)
        means = self.gan.take_metrics()
        self._write_train_summaries(train_writer, step, means, rate, grid_batch)
        self._log_progress(step, start, run_start, rate, means)
        window_start, window_steps = time.time(), 0
      if step % config.checkpoint_every == 0:  # On multiples, as summaries and evals.
        self.checkpoint_manager.save(checkpoint_number=step)
      if config.eval_every and step % config.eval_every == 0:
        last_eval = self._run_eval(eval_writer, step)
      if stop.requested and step < self.total_steps:
        self._save_unless_saved(step)
        train_writer.flush()
        eval_writer.flush()
        stop.raise_if_requested(
            f"saved {self._checkpoint_path(step)} at step {step} of {self.total_steps}; "
            "rerun the same command to resume from it")
    return step, last_eval

  def _save_unless_saved(self, step: int) -> None:
    if self.checkpoint_manager.latest_checkpoint != self._checkpoint_path(step):
      self.checkpoint_manager.save(checkpoint_number=step)

  def _finish(self) -> None:
    if self.is_chief:
      self.export()
      return
    if tf.io.gfile.exists(self._own_dir):
      tf.io.gfile.rmtree(self._own_dir)
    try:  # The last worker out removes the shared scratch parent.
      os.rmdir(os.path.dirname(self._own_dir))
    except OSError:
      pass

  # ----------------------------------------------------------------- summaries
  def _writers(self):
    if not self.is_chief:
      return tf.summary.create_noop_writer(), tf.summary.create_noop_writer()
    return (tf.summary.create_file_writer(os.path.join(self.model_dir, "train")),
            tf.summary.create_file_writer(os.path.join(self.model_dir, "eval")))

  def _write_train_summaries(self, writer, step, means, images_per_sec, grid_batch):
    with writer.as_default(step=step):
      for name, value in means.items():
        tf.summary.scalar(f"loss/{name}" if name != "psnr" else "metrics/psnr", value)
      tf.summary.scalar("learning_rate", self.train_config.learning_rate)
      tf.summary.scalar("images_per_sec", images_per_sec)
      if grid_batch is not None:
        tf.summary.image("images/input_generated_target", self.gan.summary_grid(grid_batch),
                         max_outputs=gan_step_lib.NUM_SUMMARY_IMAGES)

  def _log_progress(self, step: int, start: int, run_start: float, rate: float,
                    means: Dict[str, float]) -> None:
    eta = (time.time() - run_start) / max(step - start, 1) * (self.total_steps - step)
    logging.info(
        "step %d/%d (%.0f%%)  g=%.4f (content %.4f, adv %.4f)  d=%.4f  psnr=%.2f dB  "
        "%.1f img/s  ETA %s", step, self.total_steps, 100.0 * step / self.total_steps,
        means.get("generator_total", 0.0), means.get("generator_content", 0.0),
        means.get("generator_adversarial", 0.0), means.get("discriminator", 0.0),
        means.get("psnr", 0.0), rate, time.strftime("%H:%M:%S", time.gmtime(eta)))

  def _run_eval(self, writer, step) -> Dict[str, float]:
    metrics = self.gan.evaluate(self.train_config.eval_steps)
    if metrics:
      with writer.as_default(step=step):
        for name, value in metrics.items():
          tf.summary.scalar(f"metrics/{name}", value)
      logging.info("eval at step %d: %s", step,
                   "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
      if self.is_chief:
        files.write_json(os.path.join(self.model_dir, "eval_metrics.json"),
                         dict(metrics, step=step))
    return metrics

  # ----------------------------------------------------------------- export
  def export(self) -> str:
    """Saves the generator and generator.json into model_dir/export (atomically).

    Under mixed precision the exported model is rebuilt in float32 with the same
    weights, so the file runs anywhere.
    """
    model = self.gan.generator
    policy = self.train_config.mixed_precision
    data = self.experiment.data
    if policy != "none":
      distribute.set_mixed_precision("none")
      model = generators.build_generator(self.gan.role, data.scale, self.experiment.model)
      model.set_weights(self.gan.generator.get_weights())
      distribute.set_mixed_precision(policy)
    info = generator_files.GeneratorInfo(
        role=self.gan.role, scale=data.scale, image_size=data.image_size,
        num_res_blocks=self.experiment.model.num_res_blocks,
        filters=self.experiment.model.filters,
        image_skip=self.experiment.model.image_skip, step=self.current_step,
        sub_model=self.train_config.sub_model)
    path = generator_files.save_generator(model, info, self.export_dir)
    logging.info("Exported the %s generator to %s", self.gan.role.value, path)
    return path


def run(experiment: config_lib.ExperimentConfig,
        strategy: Optional[tf.distribute.Strategy] = None,
        allow_config_change: bool = False, restart: bool = False,
        keep_checkpoints: int = 3) -> Dict[str, float]:
  """Creates the strategy (unless given), the step and the controller; trains to the end.

  Args:
    experiment: The configuration.
    strategy: An existing strategy; by default made from experiment.train.strategy
      before any other TensorFlow op (a multi_worker requirement).
    allow_config_change, restart, keep_checkpoints: See `Controller`.

  Returns:
    The final validation metrics ({} without a val split or when already finished).
  """
  if strategy is None:
    strategy = distribute.make_strategy(experiment.train.strategy, experiment.train.tpu)
  step = gan_step_lib.GanStep(experiment, strategy)
  return Controller(step, gan_step_lib.total_steps(experiment), allow_config_change,
                    restart, keep_checkpoints).run()
