"""Folder locks: one writer per output folder (training model_dir, records, transfer set).

`FolderLock(folder)` holds an exclusive `fcntl.flock` on `<folder>/.lock` while a job
writes there, and removes the file when it is done. The kernel releases the lock when
the process ends, however it ends, so a killed job never blocks the next one: its lock
file is stale, the next job takes it over and says so. The file records the holder
(pid, host, start time, command), which is what a refused second writer reports.

Local (and NFS-with-locking) folders only; on object stores (gs://, s3://) no lock is
taken and a warning says so.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from typing import Optional

from absl import logging

LOCK_FILE = ".lock"


class LockError(RuntimeError):
  """Another live process holds the folder; the message names it."""


def _holder_text(info: dict) -> str:
  return (f"pid {info.get('pid', '?')} on {info.get('host', '?')} since "
          f"{info.get('started', '?')}")


class FolderLock:
  """An exclusive lock on a folder for the lifetime of a job (a context manager).

  Args:
    folder: The folder to own (created if needed).
    what: What the job is, for messages ("training", "the records builder", ...).

  Raises (on enter):
    LockError: another running process holds the folder.
  """

  def __init__(self, folder: str, what: str = "a job"):
    self.folder = str(folder)
    self.what = what
    self.path = os.path.join(self.folder, LOCK_FILE)
    self._fd: Optional[int] = None
    self.took_over: Optional[dict] = None

  @property
  def supported(self) -> bool:
    return "://" not in self.folder

  def _read(self) -> dict:
    try:
      with open(self.path, encoding="utf-8") as f:
        return json.load(f)
    except (OSError, ValueError):
      return {}

  def acquire(self) -> "FolderLock":
    if not self.supported:
      logging.warning("%s is not a local folder: running without a lock (two jobs must "
                      "not write it at once)", self.folder)
      return self
    os.makedirs(self.folder, exist_ok=True)
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError:
        os.close(fd)
        holder = self._read()  # The holder's own description, not ours.
        raise LockError(f"{self.folder} is in use by {holder.get('what') or self.what} "
                        f"({_holder_text(holder)}); wait for it to finish or use "
                        f"another folder (lock {self.path})") from None
      try:  # The holder may have removed the file between our open and our flock.
        if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
          break
      except FileNotFoundError:
        pass
      os.close(fd)
    previous = self._read()
    if previous.get("pid"):
      self.took_over = previous
      logging.warning("%s: took over a stale lock of a job that ended without releasing "
                      "it (%s)", self.folder, _holder_text(previous))
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"), "what": self.what, "command": sys.argv}
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
    os.fsync(fd)
    self._fd = fd
    return self

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      os.remove(self.path)  # Removed while still locked: nothing stale remains.
    except FileNotFoundError:
      pass
    finally:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> "FolderLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
