"""Keeping TensorFlow's native (C++) log lines out of the terminal.

TensorFlow 2.21 logs through absl's C++ logging, which writes to file descriptor 2
before it is initialised and ignores TF_CPP_MIN_LOG_LEVEL for those lines (oneDNN and
CUDA notices at import, cuInit errors on CPU-only machines, TFLite's XNNPACK notice).
Python cannot filter them, so, when quiet output is wanted, the few places that emit
them run with fd 2 pointed at /dev/null. Python-level errors are not affected: they are
raised, and printed after fd 2 is restored.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

_QUIET = False


def set_quiet(quiet: bool) -> None:
  """Turns the suppression on (the command lines' default) or off (--verbose)."""
  global _QUIET
  _QUIET = bool(quiet)


def is_quiet() -> bool:
  return _QUIET


@contextlib.contextmanager
def silenced() -> Iterator[None]:
  """Runs the block with native stderr discarded, when quiet output is on."""
  if not _QUIET:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)
