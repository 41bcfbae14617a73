"""SIGTERM / SIGINT as a request to stop cleanly, not a kill.

Preemptible VMs, batch schedulers and job runners send SIGTERM (Ctrl-C sends SIGINT)
and wait a while before SIGKILL. Long jobs run their loop inside `StopRequests()`: the
first signal only sets `requested`; the loop finishes its current unit of work (a
training chunk, an evaluation batch, an attack batch), writes what is complete and
raises `Interrupted`, which the entry scripts (`cli.run`) turn into one line and the
exit code 128 + signal number (143 for SIGTERM, 130 for SIGINT), as a shell reports a
job killed by that signal. A second signal acts as it would without the handler (an
impatient Ctrl-C still stops at once).
"""

from __future__ import annotations

import signal
import threading
from typing import Callable, Optional

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
  """A job stopped on request after saving its work; the message says what was kept.

  Attributes:
    signum: The signal that asked for the stop.
  """

  def __init__(self, signum: int, message: str):
    super().__init__(message)
    self.signum = int(signum)

  @property
  def exit_code(self) -> int:
    return 128 + self.signum


class Abandoned(Exception):
  """A long unit of work (a query-attack batch) given up because a stop was requested.

  Raised from inside the unit by code that polls a `should_stop` callable; the caller
  discards the unit's partial results and stops as it would after a finished unit.
  """


def check(should_stop: Optional[Callable[[], bool]], what: str) -> None:
  """Raises `Abandoned` (naming `what`) when `should_stop` is given and returns true."""
  if should_stop is not None and should_stop():
    raise Abandoned(f"{what} abandoned on a stop request")


class StopRequests:
  """Catches SIGTERM and SIGINT while active (a context manager; main thread only).

  Attributes:
    signum: The first signal received, or None.
  """

  def __init__(self):
    self.signum: Optional[int] = None
    self._previous = {}

  @property
  def requested(self) -> bool:
    return self.signum is not None

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum else ""

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self.signum = signum
    self._restore()  # A second signal is no longer caught.

  def _restore(self) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def raise_if_requested(self, message: str) -> None:
    """Raises `Interrupted` naming the signal when one arrived: `message` says what
    was kept."""
    if self.requested:
      raise Interrupted(self.signum, f"stopped by {self.name}: {message}")

  def __enter__(self) -> "StopRequests":
    if threading.current_thread() is threading.main_thread():
      for signum in SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    self._restore()
