"""The one experiment runner: a recipe's stages as jobs, each run once per settings.

A recipe (`experiments/recipes/`) is a Python config: its settings dataclasses (data,
attack, GAN sizes and losses, steps, targets, the role of each network) turned into an
ordered list of stages, each a list of `Job`s. A job is one program of this repo with
its flags (`evaluate.py`, `python -m tfrecords_builder.transfer_set`, `train_sub.py`, ...) or
one Python action (`experiments/actions.py`: ship generators, split a folder).

Skipping is by settings, not by files: when a job finishes, the runner records the
sha256 of its settings (program + flags, or action + arguments) in
`<work>/runner_state.json` (atomically). A job whose recorded hash equals its current
one is done and skipped; a job never recorded, or recorded with other settings, runs
again. The programs themselves resume (attacks per image, training from checkpoints),
so an interrupted stage continues where it stopped. The work folder is locked while the
runner writes to it.

Signals: SIGTERM / SIGINT sent to the runner are passed on to the running job's program
(it runs in its own session, so a terminal's Ctrl-C reaches it once, through the
runner): the first makes the program save its work and exit (training: a checkpoint at
the current step), a second stops it at once, as it would without the runner. The
runner then records nothing for that job, runs no other, releases the work folder and
raises `interrupts.Interrupted` (`python -m experiments` exits 143 / 130); the rerun
resumes the job.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from cdgan_tf.common import errors
from cdgan_tf.common import files
from cdgan_tf.common import interrupts
from cdgan_tf.common import locks

STATE_FILE = "runner_state.json"

# Programs and flags renamed since jobs were first recorded: new name -> old name. A job
# recorded under the old names with the same values is done, so a rename never reruns
# finished work (`Job.previous_hashes`).
RENAMED_PROGRAMS = {"-m tfrecords_builder.transfer_set": "-m tfrecords_builder.attack"}
RENAMED_FLAGS = {"-m tfrecords_builder.transfer_set": {"algorithm": "attack"}}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RecipeError(errors.UsageError):
  """A recipe, stage or override that does not exist or does not parse."""


class JobFailed(RuntimeError):
  """A job's program exited with a non-zero status."""


def format_flag(name: str, value: Any) -> str:
  """`--name=value`; booleans as `--name` / `--noname`, sequences comma-joined."""
  if isinstance(value, bool):
    return f"--{name}" if value else f"--no{name}"
  if isinstance(value, (list, tuple)):
    value = ",".join(str(v) for v in value)
  return f"--{name}={value}"


def flag_dict(settings) -> Dict[str, Any]:
  """The fields of a settings dataclass that are set (not None), as flags."""
  return {k: v for k, v in dataclasses.asdict(settings).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class Job:
  """One step of a stage.

  Attributes:
    name: Unique in the work folder (the key of its recorded state), e.g.
      "attack/adv_test". Recipes that share a job (same name and settings) share its
      result: the second one skips it.
    program: A script of the repo ("evaluate.py"), a module ("-m tfrecords_builder"),
      or an action "experiments.actions:ship_generators" (a function called in-process
      with `flags` as keyword arguments).
    flags: The program's flags (or the action's arguments), in order.
    positional: Arguments before the flags (for programs that take them).
    nice: Niceness of the program's process.
  """
  name: str
  program: str
  flags: Mapping[str, Any]
  positional: Tuple[str, ...] = ()
  nice: int = 5

  @property
  def is_action(self) -> bool:
    return ":" in self.program and not self.program.startswith("-m ")

  def settings(self) -> dict:
    settings = {"program": self.program, "flags": dict(self.flags)}
    if self.positional:
      settings["positional"] = list(self.positional)
    return settings

  def settings_hash(self) -> str:
    return _hash(self.settings())

  def previous_hashes(self) -> List[str]:
    """The hashes of the same settings under the old program and flag names."""
    if self.program not in RENAMED_PROGRAMS and self.program not in RENAMED_FLAGS:
      return []
    settings = self.settings()
    renames = RENAMED_FLAGS.get(self.program, {})
    settings["program"] = RENAMED_PROGRAMS.get(self.program, self.program)
    settings["flags"] = {renames.get(k, k): v for k, v in settings["flags"].items()}
    return [_hash(settings)]

  def command(self, python: str = sys.executable) -> List[str]:
    """The command line of a program job (run from the repo root)."""
    flags = [format_flag(k, v) for k, v in self.flags.items()]
    program = self.program.split()
    command = [python] + program + [str(a) for a in self.positional] + flags
    return (["nice", "-n", str(self.nice)] + command) if self.nice else command

  def describe(self, python: str = sys.executable) -> str:
    if self.is_action:
      args = ", ".join(f"{k}={v!r}" for k, v in self.flags.items())
      return f"{self.program}({args})"
    return " ".join(shlex.quote(part) for part in self.command(python))


def _hash(settings: dict) -> str:
  text = json.dumps(settings, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A named experiment: settings and the stages they make.

  Attributes:
    name: What `python -m experiments run <name>` selects.
    description: One line.
    settings: The recipe's settings dataclass (shown by `show`, changed by `--set`).
    stages: Stage name -> its jobs, in the order they run.
    default_stages: What runs when no stage is named.
  """
  name: str
  description: str
  settings: Any
  stages: Mapping[str, Sequence[Job]]
  default_stages: Tuple[str, ...]

  def select(self, names: Sequence[str]) -> List[str]:
    names = list(names) or list(self.default_stages)
    unknown = [n for n in names if n not in self.stages]
    if unknown:
      raise RecipeError(f"recipe {self.name} has no stage {', '.join(unknown)} "
                        f"(stages: {', '.join(self.stages)})")
    return names


def parse_overrides(settings, overrides: Sequence[str]):
  """`settings` with `key=value` overrides, each value parsed as its field's type."""
  fields = {f.name: f for f in dataclasses.fields(settings)}
  changes = {}
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep or key not in fields:
      raise RecipeError(f"--set {item}: expected KEY=VALUE with KEY one of "
                        f"{', '.join(fields)}")
    current = getattr(settings, key)
    try:
      if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
          raise errors.UsageError(text)
        value = text.lower() in ("true", "1")
      elif isinstance(current, int):
        value = int(text)
      elif isinstance(current, float):
        value = float(text)
      elif isinstance(current, tuple):
        value = tuple(v for v in text.split(",") if v)
      else:
        value = text
    except ValueError as e:
      raise RecipeError(f"--set {item}: not a {type(current).__name__}") from e
    changes[key] = value
  return dataclasses.replace(settings, **changes)


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class StateFile:
  """`<work>/runner_state.json`: job name -> {hash, settings, finished, seconds}."""

  def __init__(self, work: str):
    self.path = os.path.join(work, STATE_FILE)
    self.jobs: Dict[str, dict] = {}
    if os.path.exists(self.path):
      self.jobs = files.read_json(self.path).get("jobs", {})

  def is_done(self, job: Job) -> bool:
    """Recorded with the job's settings (under its current or its old names)."""
    recorded = self.jobs.get(job.name, {}).get("hash")
    return recorded is not None and recorded in [job.settings_hash(), *job.previous_hashes()]

  def recorded_hash(self, job: Job) -> Optional[str]:
    return self.jobs.get(job.name, {}).get("hash")

  def record(self, job: Job, seconds: float) -> None:
    self.jobs[job.name] = {"hash": job.settings_hash(), "settings": job.settings(),
                           "finished": _now(), "seconds": round(seconds, 1)}
    files.write_json(self.path, {"jobs": self.jobs})


def call_action(program: str, arguments: Mapping[str, Any]):
  module_name, _, function_name = program.partition(":")
  function: Callable = getattr(importlib.import_module(module_name), function_name)
  return function(**arguments)


class SignalForwarder:
  """While active (a context manager; main thread only), SIGTERM and SIGINT are passed
  on to the running job's process, every time (its own handler decides what a first
  and a second signal mean).

  Attributes:
    signum: The first signal received, or None.
    child: The running job's process, or None between jobs.
  """

  def __init__(self):
    self.signum: Optional[int] = None
    self.child: Optional[subprocess.Popen] = None
    self._previous = {}

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self.signum = self.signum or signum
    if self.child is not None and self.child.poll() is None:
      self.child.send_signal(signum)

  def stop_if_requested(self, what: str) -> None:
    """Raises `interrupts.Interrupted` naming the signal, with `what` (what was kept),
    once a signal has arrived."""
    if self.signum:
      raise interrupts.Interrupted(
          self.signum, f"stopped by {signal.Signals(self.signum).name}: {what}")

  def __enter__(self) -> "SignalForwarder":
    if threading.current_thread() is threading.main_thread():
      for signum in interrupts.SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}


def run_job(job: Job, python: str, log: Callable[[str], None],
            forwarder: Optional[SignalForwarder] = None) -> None:
  """Runs one job from the repo root; raises JobFailed when its program fails, and
  `interrupts.Interrupted` when a signal stopped it (see the module docstring)."""
  del log
  forwarder = forwarder or SignalForwarder()
  if job.is_action:
    call_action(job.program, job.flags)
    forwarder.stop_if_requested(f"after job {job.name}")
    return
  # Its own session: a terminal's Ctrl-C reaches the program once, through the runner.
  forwarder.child = subprocess.Popen(job.command(python), cwd=REPO_ROOT,
                                     start_new_session=True)
  try:
    status = forwarder.child.wait()
  finally:
    forwarder.child = None
  forwarder.stop_if_requested(
      f"job {job.name} ended with exit {status} and is not recorded (the rerun resumes it)")
  if status != 0:
    raise JobFailed(f"job {job.name} failed (exit {status}): {job.describe(python)}")


def run(recipe: Recipe, stages: Sequence[str], work: str, python: str = sys.executable,
        dry_run: bool = False, log: Callable[[str], None] = print) -> List[str]:
  """Runs the named stages (default: the recipe's defaults) in `work`.

  Returns:
    The names of the jobs that ran (skipped ones excluded; in a dry run, those that
    would run).
  """
  names = recipe.select(stages)
  os.makedirs(work, exist_ok=True)
  lock = locks.FolderLock(work, f"the experiment runner ({recipe.name})")
  if not dry_run:
    lock.acquire()
  try:
    with SignalForwarder() as forwarder:
      return _run_stages(recipe, names, work, python, dry_run, log, forwarder)
  finally:
    if not dry_run:
      lock.release()


def _run_stages(recipe: Recipe, names: Sequence[str], work: str, python: str,
                dry_run: bool, log: Callable[[str], None],
                forwarder: SignalForwarder) -> List[str]:
  """`run`'s loop over the stages' jobs, inside the lock."""
  ran = []
  state = StateFile(work)
  for stage in names:
    jobs = recipe.stages[stage]
    log(f"=== {recipe.name} / {stage}: {len(jobs)} job(s) ({_now()})")
    for job in jobs:
      if state.is_done(job):
        log(f"  done   {job.name} (settings {job.settings_hash()})")
        continue
      before = state.recorded_hash(job)
      why = "new" if before is None else f"settings changed (was {before})"
      log(f"  run    {job.name} ({why}): {job.describe(python)}")
      ran.append(job.name)
      if dry_run:
        continue
      forwarder.stop_if_requested(f"before job {job.name}")
      start = time.time()
      run_job(job, python, log, forwarder)
      state.record(job, time.time() - start)
      log(f"  ok     {job.name} in {time.time() - start:.0f} s")
  return ran
