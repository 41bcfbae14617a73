"""What the `Controller` runs around training: cadenced actions and timing callbacks.

Two kinds of hooks, both handed to `controller.Controller` (orbit's `train_actions`):

  Action     work on a cadence of steps: image summaries, validation, the generator
             export. `every` > 0 runs it after the chunk that ends on each multiple of
             `every` (the controller ends chunks there); `at_end` runs it once more when
             the last step is trained, unless it ran at that step already.
  Callback   hooks around every chunk, for whoever needs to watch the loop without
             changing it (benchmarks time it through these):
             on_train_begin, on_chunk_begin, on_chunk_trained (right after
             `GanStep.train` returned), on_chunk_end (after the chunk's summaries,
             checkpoint and actions).

Actions run with the controller's train summary writer as the default writer, so an
action's `tf.summary.*` lands in `summary_dir` at the step it is given.

Integers named `step_number` are optimizer steps; `step` is always a `GanStep`.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional

from absl import logging
import tensorflow as tf

from cdgan_tf import config as config_lib
from cdgan_tf.common import files
from cdgan_tf.models import generator_files
from cdgan_tf.models import generators
from cdgan_tf.training import distribute
from cdgan_tf.training import gan_step as gan_step_lib

EVAL_METRICS_FILE = "eval_metrics.json"


class Action:
  """Work the controller runs on a cadence of steps (subclass and define `__call__`).

  Attributes:
    every: Steps between runs (chunks end on its multiples); 0: never on a cadence.
    at_end: Also run when the last step is trained (unless it ran at that step).
  """
  every: int = 0
  at_end: bool = False

  def __call__(self, step_number: int) -> None:
    raise NotImplementedError


class Callback:
  """Hooks around the controller's chunks; each default does nothing."""

  def on_train_begin(self, step_number: int) -> None:
    """Before the first chunk of `Controller.train` (after the restore)."""

  def on_chunk_begin(self, step_number: int, num_steps: int) -> None:
    """Right before `GanStep.train(num_steps)` from `step_number`."""

  def on_chunk_trained(self, step_number: int) -> None:
    """Right after `GanStep.train` returned (`step_number`: the step reached)."""

  def on_chunk_end(self, step_number: int) -> None:
    """After the chunk's summaries, checkpoint and actions."""


class FunctionAction(Action):
  """An action from a function of the step number."""

  def __init__(self, fn: Callable[[int], object], every: int = 0, at_end: bool = False):
    self._fn, self.every, self.at_end = fn, int(every), bool(at_end)

  def __call__(self, step_number: int) -> None:
    self._fn(step_number)


class ImageSummaries(Action):
  """input | generated | target grids of a fixed batch, into the train summaries.

  Args:
    step: The GAN step whose generator is shown.
    batch: One host-side (input, target) batch (`GanStep.first_batch`).
    every: Steps between grids; also written at the last step.
  """
  at_end = True

  def __init__(self, step: gan_step_lib.GanStep, batch, every: int):
    self._step, self._batch, self.every = step, batch, int(every)

  def __call__(self, step_number: int) -> None:
    tf.summary.image("images/input_generated_target", self._step.summary_grid(self._batch),
                     step=step_number, max_outputs=gan_step_lib.NUM_SUMMARY_IMAGES)


class Evaluate(Action):
  """Validation metrics: TensorBoard under `summary_dir`, the log, and (chief)
  `model_dir/eval_metrics.json`. Every worker runs it (the pass is collective).

  Args:
    step: The GAN step.
    eval_steps: Validation batches per pass (0: the whole split).
    every: Steps between passes (0: only at the end).
    summary_dir: Where the eval events go ("" for none: a non-chief worker).
    metrics_path: The JSON file of the last metrics ("" for none).

  Attributes:
    last_metrics: The newest pass's metrics ({} before any, or without val data).
  """
  at_end = True

  def __init__(self, step: gan_step_lib.GanStep, eval_steps: int, every: int,
               summary_dir: str = "", metrics_path: str = ""):
    self._step, self._eval_steps, self.every = step, int(eval_steps), int(every)
    self._summary_dir, self._metrics_path = summary_dir, metrics_path
    self._writer = None
    self.last_metrics: Dict[str, float] = {}

  def __call__(self, step_number: int) -> None:
    metrics = self._step.evaluate(self._eval_steps)
    self.last_metrics = metrics
    if not metrics:
      return
    if self._summary_dir:
      if self._writer is None:
        self._writer = tf.summary.create_file_writer(self._summary_dir)
      with self._writer.as_default(step=step_number):
        for name, value in metrics.items():
          tf.summary.scalar(f"metrics/{name}", value)
      self._writer.flush()
    logging.info("eval at step %d: %s", step_number,
                 "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    if self._metrics_path:
      files.write_json(self._metrics_path, dict(metrics, step=step_number))


def export_generator(step: gan_step_lib.GanStep, experiment: config_lib.ExperimentConfig,
                     export_dir: str) -> str:
  """Saves the generator and generator.json into `export_dir` (atomically).

  Under mixed precision the exported model is rebuilt in float32 with the same
  weights, so the file runs anywhere. Returns the generator file's path.
  """
  model = step.generator
  policy = experiment.runtime.mixed_precision
  data = experiment.data
  if policy != "none":
    distribute.set_mixed_precision("none")
    model = generators.build_generator(step.role, data.scale, experiment.model)
    model.set_weights(step.generator.get_weights())
    distribute.set_mixed_precision(policy)
  info = generator_files.GeneratorInfo(
      role=step.role, scale=data.scale, image_size=data.image_size,
      num_res_blocks=experiment.model.num_res_blocks, filters=experiment.model.filters,
      image_skip=experiment.model.image_skip, step=int(step.step.numpy()),
      sub_model=experiment.train.sub_model)
  path = generator_files.save_generator(model, info, export_dir)
  logging.info("Exported the %s generator to %s", step.role.value, path)
  return path


class ExportGenerator(Action):
  """Exports the generator at the end (`export_generator`).

  Args:
    step: The GAN step.
    experiment: Its configuration (sizes and precision for the export's metadata).
    export_dir: The export folder (model_dir/export).
  """
  at_end = True

  def __init__(self, step: gan_step_lib.GanStep, experiment: config_lib.ExperimentConfig,
               export_dir: str):
    self._step, self._experiment, self.export_dir = step, experiment, export_dir

  @property
  def export_path(self) -> str:
    return os.path.join(self.export_dir, generator_files.GENERATOR_FILE)

  def __call__(self, step_number: int) -> None:
    del step_number  # The export records the step's own counter.
    export_generator(self._step, self._experiment, self.export_dir)


class RemoveFolder(Action):
  """At the end, removes a non-chief worker's scratch folder, and its parent once empty
  (the last worker out)."""
  at_end = True

  def __init__(self, folder: str):
    self._folder = folder

  def __call__(self, step_number: int) -> None:
    del step_number
    if tf.io.gfile.exists(self._folder):
      tf.io.gfile.rmtree(self._folder)
    try:
      os.rmdir(os.path.dirname(self._folder))
    except OSError:
      pass


def default_actions(step: gan_step_lib.GanStep, experiment: config_lib.ExperimentConfig,
                    is_chief: bool, own_dir: Optional[str] = None) -> list:
  """The actions of a training run: image grids and export (chief), validation (all).

  Args:
    step: The GAN step.
    experiment: Its configuration (`runtime`: model_dir and cadences).
    is_chief: Whether this worker writes the run's files.
    own_dir: A non-chief worker's scratch folder, removed at the end.
  """
  runtime = experiment.runtime
  model_dir = runtime.model_dir
  out = []
  if is_chief:
    out.append(ImageSummaries(step, step.first_batch(), runtime.summary_every))
  out.append(Evaluate(step, runtime.eval_steps, runtime.eval_every,
                      summary_dir=os.path.join(model_dir, "eval") if is_chief else "",
                      metrics_path=(os.path.join(model_dir, EVAL_METRICS_FILE)
                                    if is_chief else "")))
  if is_chief:
    out.append(ExportGenerator(step, experiment,
                               os.path.join(model_dir, generator_files.EXPORT_DIR)))
  elif own_dir:
    out.append(RemoveFolder(own_dir))
  return out
