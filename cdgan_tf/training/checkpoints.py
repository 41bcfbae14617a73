"""Restoring the newest checkpoint that reads back whole, never step 0 by accident.

`tf.train.CheckpointManager` trusts the `checkpoint` state file: without it (deleted,
cut short) a run starts again from step 0 and overwrites the checkpoints still on disk,
and a damaged newest checkpoint stops the run with a traceback although an older one is
intact. Here the folder itself is the truth:

  * `scan` lists every `ckpt-N` whose files are on disk, newest first, whatever the
    state file says;
  * `verify` reads every tensor of one back (TensorFlow checks each tensor's CRC32C), so
    a truncated, deleted or bit-flipped data or index file is found before it is used;
  * `restore_newest` restores the newest whole one, moves damaged newer ones into
    `checkpoints/damaged/` (kept for inspection, out of the way of the scan), rewrites
    the state file so the manager keeps rotating the checkpoints that exist, and says in
    one log line which checkpoint it restored and why;
  * a folder whose checkpoints are all damaged is refused (`CheckpointError`) unless the
    run is restarted on purpose (`restart=True`, --restart); a restart moves the old
    checkpoints into `checkpoints/before-restart-<UTC>/` instead of overwriting them.
"""

from __future__ import annotations

import datetime
import os
import re
from typing import List, Optional, Tuple

from absl import logging
import tensorflow as tf

from cdgan_tf.common import errors

PREFIX = "ckpt"
STATE_FILE = "checkpoint"
DAMAGED_DIR = "damaged"
_NAME_RE = re.compile(rf"^{PREFIX}-(\d+)(\.index|\.data-\d+-of-\d+)$")


class CheckpointError(errors.UsageError):
  """A model_dir holds checkpoints but none can be restored; the message says what to do."""


def scan(directory: str) -> List[Tuple[int, str]]:
  """[(step, prefix)] of the checkpoints with any file in `directory`, newest first."""
  if not tf.io.gfile.isdir(directory):
    return []
  steps = set()
  for name in _listdir(directory):
    match = _NAME_RE.match(name)
    if match:
      steps.add(int(match.group(1)))
  return [(s, os.path.join(directory, f"{PREFIX}-{s}")) for s in sorted(steps, reverse=True)]


def _listdir(directory: str) -> List[str]:
  if "://" in directory:
    return [n.rstrip("/") for n in tf.io.gfile.listdir(directory)]
  return os.listdir(directory)  # Any name, even one that is not UTF-8.


def newest_step(directory: str) -> int:
  """The step of the newest checkpoint on disk (not verified; 0 without one)."""
  found = scan(directory)
  return found[0][0] if found else 0


def verify(prefix: str) -> Optional[str]:
  """Reads every tensor of checkpoint `prefix` back. Returns None if whole, else why not."""
  if not tf.io.gfile.exists(prefix + ".index"):
    return "its .index file is missing"
  try:
    reader = tf.train.load_checkpoint(prefix)
    for key in reader.get_variable_to_dtype_map():
      reader.get_tensor(key)
  except (tf.errors.OpError, ValueError, IndexError, OSError, RuntimeError) as e:
    text = " ".join(str(getattr(e, "message", e)).split())
    return f"{type(e).__name__}: {text[:200]}"
  return None


def _files_of(prefix: str) -> List[str]:
  folder, name = os.path.split(prefix)
  return [os.path.join(folder, n) for n in _listdir(folder)
          if n == name + ".index" or n.startswith(name + ".data-")]


def _move(prefix: str, destination: str) -> None:
  tf.io.gfile.makedirs(destination)
  for path in _files_of(prefix):
    tf.io.gfile.rename(path, os.path.join(destination, os.path.basename(path)),
                       overwrite=True)


def _state_note(directory: str, newest: str) -> str:
  path = os.path.join(directory, STATE_FILE)
  if not tf.io.gfile.exists(path):
    return "state file missing, found by scanning the folder"
  try:
    state = tf.train.get_checkpoint_state(directory)
  except Exception:  # pylint: disable=broad-except  (any damage of the text proto)
    state = None
  if state is None or not state.model_checkpoint_path:
    return "state file damaged, found by scanning the folder"
  if os.path.basename(state.model_checkpoint_path) != os.path.basename(newest):
    return (f"the state file named {os.path.basename(state.model_checkpoint_path)}, found "
            f"{os.path.basename(newest)} by scanning the folder")
  return ""


def _write_state(directory: str, prefixes: List[str]) -> None:
  """Rewrites the state file: `prefixes` oldest first, the last one the newest."""
  path = os.path.join(directory, STATE_FILE)
  if not prefixes:
    if tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)
    return
  # Their file times as save times, so that the manager rotates them (keep_checkpoints).
  times = [tf.io.gfile.stat(p + ".index").mtime_nsec / 1e9 for p in prefixes]
  tf.compat.v1.train.update_checkpoint_state(
      directory, prefixes[-1], all_model_checkpoint_paths=prefixes,
      all_model_checkpoint_timestamps=times, last_preserved_timestamp=min(times) - 1)


def _utc() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def restore_newest(checkpoint: tf.train.Checkpoint, directory: str,
                   restart: bool = False) -> Optional[str]:
  """Restores the newest checkpoint of `directory` that reads back whole.

  Args:
    checkpoint: What to restore into.
    directory: The checkpoints folder.
    restart: Start from scratch even though checkpoints exist: they are moved into
      `before-restart-<UTC>/` and nothing is restored.

  Returns:
    The restored prefix, or None (no checkpoint, or `restart`).

  Raises:
    CheckpointError: checkpoints exist but none reads back whole (without `restart`).
    ValueError, AssertionError, tf.errors.InvalidArgumentError: a whole checkpoint that
      does not fit these models (raised by `tf.train.Checkpoint.restore`).
  """
  found = scan(directory)
  if not found:
    return None
  if restart:
    destination = os.path.join(directory, f"before-restart-{_utc()}")
    for _, prefix in found:
      _move(prefix, destination)
    _write_state(directory, [])
    logging.warning("--restart: training from step 0; the %d earlier checkpoints were "
                    "moved to %s", len(found), destination)
    return None
  note = _state_note(directory, found[0][1])
  damaged = []
  for index, (step, prefix) in enumerate(found):
    reason = verify(prefix)
    if reason is not None:
      damaged.append((prefix, reason))
      continue
    checkpoint.restore(prefix)
    for bad, _ in damaged:
      _move(bad, os.path.join(directory, DAMAGED_DIR))
    _write_state(directory, [p for _, p in reversed(found[index:])])
    notes = [note] if note else []
    notes += [f"{os.path.basename(p)} is damaged ({r}), moved to {DAMAGED_DIR}/"
              for p, r in damaged]
    logging.info("Restored %s at step %d%s", prefix, step,
                 f" ({'; '.join(notes)})" if notes else "")
    return prefix
  raise CheckpointError(
      f"{directory} holds {len(found)} checkpoints but none reads back whole ("
      + "; ".join(f"{os.path.basename(p)}: {r}" for p, r in damaged[:3])
      + "); pass --restart to train from step 0 (they are then moved to "
      f"{os.path.join(directory, 'before-restart-<UTC>')}/) or use a new --model_dir")
