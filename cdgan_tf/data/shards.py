"""Record shards checked against their manifest before they are read.

`tfrecords_builder` writes `manifest.json` next to the shards with, per shard, its file
name, record count and sha256. A truncated or bit-flipped shard otherwise crashes a
reader with a traceback naming no file, and a shard cut at a record boundary is read as
a shorter split without a word. `check_files` reads each listed shard once per process
(sha256 when the manifest has it, else a record count) and:
  * refuses a damaged or short shard with one line naming it (`DamagedShardError`), or
  * with `skip_damaged=True` (--skip_damaged_shards) leaves it out and says how many
    records were lost.
Shards the manifest does not list (or without a manifest) are read as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, List, Optional, Tuple

from absl import logging
import tensorflow as tf

from cdgan_tf.common import errors

MANIFEST = "manifest.json"
_CHUNK = 1 << 20
_verdicts: Dict[Tuple[str, int, int], Optional[str]] = {}  # (path, size, mtime) -> reason


class DamagedShardError(errors.UsageError):
  """A shard differs from its manifest entry; the message names it and what to do."""


def _manifest_entries(folder: str) -> Dict[str, dict]:
  """{shard file name: its manifest entry} of the manifest in `folder` ({} without one)."""
  path = os.path.join(folder, MANIFEST)
  if not tf.io.gfile.exists(path):
    return {}
  try:
    with tf.io.gfile.GFile(path) as f:
      shards = json.load(f).get("shards", {})
    return {e["file"]: e for entries in shards.values() for e in entries}
  except (ValueError, KeyError, TypeError, AttributeError):
    logging.warning("%s is not a readable manifest: its shards are not checked", path)
    return {}


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as f:
    while True:
      chunk = f.read(_CHUNK)
      if not chunk:
        return digest.hexdigest()
      digest.update(chunk)


def _count(path: str) -> int:
  return int(tf.data.TFRecordDataset(path).reduce(tf.constant(0, tf.int64),
                                                  lambda n, _: n + 1))


def damage(path: str, entry: dict) -> Optional[str]:
  """Why shard `path` differs from its manifest `entry` (None when it matches)."""
  expected = entry.get("examples")
  if entry.get("sha256"):
    if _sha256(path) == entry["sha256"]:
      return None
    try:
      found = _count(path)
    except tf.errors.OpError as e:
      return (f"its sha256 differs from {MANIFEST} and it does not read back "
              f"({type(e).__name__}: {' '.join(str(e.message).split())[:120]})")
    if expected is not None and found != expected:
      return f"it holds {found} records where {MANIFEST} says {expected}"
    return f"its sha256 differs from {MANIFEST} (changed or damaged)"
  try:
    found = _count(path)
  except tf.errors.OpError as e:
    return f"it does not read back ({type(e).__name__})"
  if expected is not None and found != expected:
    return f"it holds {found} records where {MANIFEST} says {expected}"
  return None


def check_files(files: List[str], skip_damaged: bool = False) -> List[str]:
  """The shards of `files` that match their manifest (all that it lists are checked).

  Args:
    files: Shard paths.
    skip_damaged: Leave damaged shards out (with a warning giving the records lost)
      instead of refusing them.

  Returns:
    `files` without the damaged shards (in the same order).

  Raises:
    DamagedShardError: a damaged shard without `skip_damaged`, or every shard damaged.
  """
  kept, lost, skipped = [], 0, []
  entries_by_folder: Dict[str, Dict[str, dict]] = {}
  for path in files:
    folder, name = os.path.split(path)
    if folder not in entries_by_folder:
      entries_by_folder[folder] = _manifest_entries(folder)
    entry = entries_by_folder[folder].get(name)
    if entry is None:
      kept.append(path)
      continue
    stat = tf.io.gfile.stat(path)
    key = (path, stat.length, stat.mtime_nsec)
    if key not in _verdicts:
      _verdicts[key] = damage(path, entry)
    reason = _verdicts[key]
    if reason is None:
      kept.append(path)
      continue
    if not skip_damaged:
      raise DamagedShardError(
          f"record shard {path} is damaged: {reason}; rebuild it, or pass "
          f"--skip_damaged_shards to leave its {entry.get('examples', '?')} records out")
    skipped.append(path)
    lost += int(entry.get("examples") or 0)
    logging.warning("skipped the damaged record shard %s (%s): %s records lost", path,
                    reason, entry.get("examples", "?"))
  if skipped and not kept:
    raise DamagedShardError(f"every record shard is damaged (first: {skipped[0]})")
  if skipped:
    logging.warning("--skip_damaged_shards: left out %d damaged shard(s), %d records lost",
                    len(skipped), lost)
  return kept
