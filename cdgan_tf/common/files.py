"""Atomic file writes: a reader never sees a half-written file that looks complete.

Every writer puts the content into a hidden temporary sibling and renames it over the
destination (`tf.io.gfile`, so local paths and cloud buckets both work). An interrupted
write leaves at most a `.tmp-*` file behind, which `remove_stale_temporaries` clears.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from typing import Iterator

import tensorflow as tf

TMP_MARK = ".tmp-"


def temporary_path(path: str) -> str:
  """The hidden temporary sibling of `path` for this process, same extension.

  `results.json` -> `.results.json.tmp-<pid>.json`; keeping the extension lets writers
  that pick a format from it (matplotlib, PIL) work unchanged.
  """
  folder, name = os.path.split(str(path))
  extension = os.path.splitext(name)[1]
  return os.path.join(folder, f".{name}{TMP_MARK}{os.getpid()}{extension}")


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path to write; renames it to `path` if the block succeeds.

  On an exception the temporary file is removed and the destination is untouched.
  """
  tmp = temporary_path(path)
  try:
    yield tmp
    tf.io.gfile.rename(tmp, str(path), overwrite=True)
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)


class WriteError(OSError):
  """A folder that cannot be written (permissions, full disk); the message names it."""


def check_writable(folder: str, what: str = "") -> str:
  """Creates `folder` if needed and writes, then removes, a probe file in it.

  Run before long work, so that a read-only or full folder fails at once instead of at
  the first save, hours later.

  Raises:
    WriteError: the folder cannot be created or written; names it and the reason.
  """
  folder = str(folder)
  probe = os.path.join(folder, f".write-probe{TMP_MARK}{os.getpid()}")
  try:
    tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("probe\n" * 512)  # A few KB: a full disk fails here.
    tf.io.gfile.remove(probe)
  except (OSError, tf.errors.OpError) as e:
    reason = getattr(e, "strerror", None) or " ".join(str(getattr(e, "message", e)).split())
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
      reason = "no space left on the device"
    raise WriteError(f"cannot write to {what + ' ' if what else ''}{folder} ({reason}); "
                     "nothing was written") from None
  return folder


def remove_if_empty(folder: str) -> bool:
  """Removes `folder` if it exists and holds nothing; returns whether it did."""
  try:
    os.rmdir(folder)
    return True
  except OSError:
    return False


def write_text(path: str, text: str) -> str:
  """Writes `text` to `path` atomically. Returns `path`."""
  with atomic_path(path) as tmp:
    with tf.io.gfile.GFile(tmp, "w") as f:
      f.write(text)
  return str(path)


def write_json(path: str, content, indent: int = 2) -> str:
  """Writes `content` as JSON (sorted as given, trailing newline) atomically."""
  return write_text(path, json.dumps(content, indent=indent) + "\n")


def read_json(path: str):
  """Reads a JSON file (any tf.io.gfile path)."""
  with tf.io.gfile.GFile(str(path)) as f:
    return json.load(f)


def _writer_alive(name: str) -> bool:
  """Whether the process whose pid is in a temporary name is still running here."""
  digits = name.split(TMP_MARK, 1)[1].split(".", 1)[0][:12]
  if not digits.isdigit() or int(digits) == os.getpid():
    return False
  try:
    os.kill(int(digits), 0)
  except (OSError, ValueError):
    return False
  return True


def remove_stale_temporaries(folder: str) -> list:
  """Removes the `.*.tmp-<pid>*` files that crashed writers left in `folder`.

  Files of a writer that is still running on this machine are kept. Returns the
  removed paths.

  Any name is handled, including one that is not valid UTF-8 (local folders are
  listed and cleaned with `os`, which keeps such bytes); the returned paths show them
  as \\xNN escapes.
  """
  removed = []
  folder = str(folder)
  if not tf.io.gfile.isdir(folder):
    return removed
  local = "://" not in folder
  names = os.listdir(folder) if local else [n.rstrip("/") for n in tf.io.gfile.listdir(folder)]
  for name in names:
    path = os.path.join(folder, name)
    if not (name.startswith(".") and TMP_MARK in name) or _writer_alive(name):
      continue
    if local:
      if os.path.isdir(path):
        continue
      try:
        os.remove(path)
      except FileNotFoundError:
        continue
    elif tf.io.gfile.isdir(path):
      continue
    else:
      tf.io.gfile.remove(path)
    removed.append(os.fsencode(path).decode("utf-8", "backslashreplace"))
  return removed
