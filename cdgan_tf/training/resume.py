"""Resuming a run safely: the same settings, no crash leftovers, each step logged once.

  config.json           the configuration the run started with (never overwritten)
  config_history.json   every later change: [{"step", "utc", "changes": {field: [old,
                        new]}, "config": the new configuration}]

On resume the new configuration is compared with the run's current one:
  * fields that change the shapes of the models or their checkpoint (SHAPE_FIELDS) are
    refused: the folder holds another run;
  * operational fields (OPERATIONAL_FIELDS: cadences, strategy, paths) change freely and
    are recorded;
  * a longer run (LENGTH_FIELDS: a higher train_steps, or a higher epochs while
    train_steps is unset) continues the run and is recorded: it changes none of the
    steps already taken (`extension`);
  * every other change (learning rate, losses, data, a shorter run, ...) is refused unless
    `allow_changes`, and then recorded with the step it took effect at.

`clean_leftovers` removes what a killed run leaves behind (temporary checkpoints and
files); `trim_events` drops TensorBoard events newer than the restored step, so that
after any number of resumes TensorBoard shows each step once.
"""

from __future__ import annotations

import datetime
import glob
import os
from typing import Dict, List, Tuple

from absl import logging
import tensorflow as tf

from cdgan_tf import config as config_lib
from cdgan_tf.common import errors
from cdgan_tf.common import files

CONFIG_FILE = "config.json"
HISTORY_FILE = "config_history.json"
SHAPE_FIELDS = config_lib.SHAPE_FIELDS  # Derived from config.py's dataclasses.
OPERATIONAL_FIELDS = config_lib.OPERATIONAL_FIELDS
LENGTH_FIELDS = config_lib.LENGTH_FIELDS  # A longer run extends without a flag.
Changes = Dict[str, Tuple[object, object]]


class ConfigChangeError(errors.UsageError):
  """The new settings differ from the run's in a way that is not allowed."""


def _flatten(content: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in content.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def differences(old: dict, new: dict) -> Changes:
  """{dotted field: (old, new)} of the fields whose values differ."""
  a, b = _flatten(old), _flatten(new)
  return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _describe(changes: Changes) -> str:
  return ", ".join(f"{k.split('.', 1)[1]} {old!r} -> {new!r}"
                   for k, (old, new) in changes.items())


def extension(old: dict, new: dict, changes: Changes) -> Changes:
  """The changes in `changes` that only lengthen the run ({} when they do not).

  A run lengthens when its effective length grows: train_steps rises (both set; epochs
  is then unused), or epochs rises while train_steps is unset in both. A switch between
  the two (train_steps set on one side only) is not judged here: its length in steps
  depends on the data, so it stays a change that needs `allow_changes`.

  Args:
    old, new: The run's and the new configuration (`ExperimentConfig.to_dict()`).
    changes: `differences(old, new)`.
  """
  length = {k: v for k, v in changes.items() if k in LENGTH_FIELDS}
  if not length:
    return {}
  old_steps = old.get("train", {}).get("train_steps")
  new_steps = new.get("train", {}).get("train_steps")
  if old_steps is not None and new_steps is not None:
    longer = new_steps > old_steps if "train.train_steps" in length else True
  elif old_steps is None and new_steps is None:
    old_epochs, new_epochs = length.get("train.epochs", (1, 1))
    longer = new_epochs > old_epochs if "train.epochs" in length else False
  else:
    longer = False
  return length if longer else {}


def current_config(model_dir: str) -> dict:
  """The run's configuration in effect: the last recorded change, else config.json
  ({} for a new folder)."""
  history_path = os.path.join(model_dir, HISTORY_FILE)
  if tf.io.gfile.exists(history_path):
    history = files.read_json(history_path)
    if history:
      return history[-1]["config"]
  path = os.path.join(model_dir, CONFIG_FILE)
  return files.read_json(path) if tf.io.gfile.exists(path) else {}


def check_and_record(model_dir: str, experiment: config_lib.ExperimentConfig, step: int,
                     allow_changes: bool = False) -> Changes:
  """Compares the settings with the run's, refuses or records changes (chief only).

  Args:
    model_dir: The run's folder.
    experiment: The new configuration.
    step: The step the run resumes at (recorded with a change).
    allow_changes: Accept non-shape changes (--allow_config_change); a longer run
      (`extension`) and operational changes need no permission.

  Returns:
    The recorded changes ({} for a new run or the same settings).

  Raises:
    ConfigChangeError: shape changes, or other changes without `allow_changes`.
  """
  new = experiment.to_dict()
  old = current_config(model_dir)
  if not old:
    tf.io.gfile.makedirs(model_dir)
    files.write_json(os.path.join(model_dir, CONFIG_FILE), new)
    return {}
  try:  # Fields newer than the run's config.json read as their defaults, not as changes.
    old = config_lib.ExperimentConfig.from_dict(old).to_dict()
  except (TypeError, ValueError):
    pass  # Unknown or invalid old fields: compare as written (they show as changes).
  changes = differences(old, new)
  if not changes:
    return {}
  shape = {k: v for k, v in changes.items() if k in SHAPE_FIELDS}
  if shape:
    raise ConfigChangeError(
        f"{model_dir} holds another run: {_describe(shape)} change the models' shapes; "
        "use a new --model_dir")
  longer = extension(old, new, changes)
  refused = {k: v for k, v in changes.items()
             if k not in OPERATIONAL_FIELDS and k not in longer}
  if refused and not allow_changes:
    raise ConfigChangeError(
        f"the settings differ from the run in {model_dir} (step {step}): "
        f"{_describe(refused)}; pass --allow_config_change to resume with them (the change "
        f"is recorded in {HISTORY_FILE}) or use a new --model_dir")
  history_path = os.path.join(model_dir, HISTORY_FILE)
  history = files.read_json(history_path) if tf.io.gfile.exists(history_path) else []
  history.append({"step": int(step),
                  "utc": datetime.datetime.now(datetime.timezone.utc).strftime(
                      "%Y-%m-%dT%H:%M:%SZ"),
                  "changes": {k: list(v) for k, v in changes.items()},
                  "extended": sorted(longer), "config": new})
  files.write_json(history_path, history)
  logging.warning("resuming %s at step %d with changed settings (recorded in %s): %s",
                  model_dir, step, HISTORY_FILE, _describe(changes))
  return changes


def clean_leftovers(model_dir: str) -> List[str]:
  """Removes a killed run's temporary checkpoints and files; returns what it removed."""
  removed = []
  for pattern in ("checkpoints/*_temp", "checkpoints/*_temp_*"):
    for path in tf.io.gfile.glob(os.path.join(model_dir, pattern)):
      if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
      else:
        tf.io.gfile.remove(path)
      removed.append(path)
  for folder in (model_dir, os.path.join(model_dir, "export")):
    removed += files.remove_stale_temporaries(folder)
  if removed:
    logging.warning("removed what an interrupted run left behind: %s", ", ".join(removed))
  return removed


def trim_events(folder: str, last_step: int) -> int:
  """Drops the summaries of steps after `last_step` from the event files in `folder`.

  A run killed between a summary and the checkpoint it belongs to has logged steps it
  will redo; without this, TensorBoard would show those steps twice.

  Returns:
    The number of events dropped.
  """
  dropped = 0
  for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
    events, torn = [], False
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        events.append(event)
    except tf.errors.DataLossError:  # A record torn by the kill: dropped with the rest.
      torn = True
    keep = [e for e in events if not (e.HasField("summary") and e.step > last_step)]
    if len(keep) == len(events) and not torn:
      continue
    dropped += len(events) - len(keep) + int(torn)
    with files.atomic_path(path) as tmp:
      with tf.io.TFRecordWriter(tmp) as writer:
        for event in keep:
          writer.write(event.SerializeToString())
  if dropped:
    logging.warning("%s: dropped %d summaries of steps after %d (they are redone)",
                    folder, dropped, last_step)
  return dropped
