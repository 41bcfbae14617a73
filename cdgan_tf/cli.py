"""One way every entry point starts, logs and fails.

Importing this module does nothing but define `--verbose` (no TensorFlow import, no
reading of sys.argv). An entry script begins with

  from cdgan_tf import cli
  cli.start()  # Before anything imports TensorFlow.

`start()` decides, from the command line, whether TensorFlow's C++ and Python info logs
reach the terminal. By default they do not (`--verbose`, or absl's `-v N` /
`--verbosity=N` with N > 0, brings them back), and the script's own progress lines are
short: `06:04:27 step 300/2000 (15%) ...`.

`run(main)` replaces `absl.app.run(main)`:
  * a flag that does not parse, and every usage or input error raised by `main`
    (`errors.UsageError`, a missing file, a folder in use, ...), prints one line
    `<program>: error: <what> (<which file or flag>)` to stderr and exits with code 2;
  * with `--verbose` the traceback is shown instead;
  * anything else, a plain ValueError included, raises with its traceback (a bug, not
    a usage error).
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging

USAGE_EXIT_CODE = 2
flags.DEFINE_bool("verbose", False, "Show TensorFlow's logs and full tracebacks of usage "
                  "errors.")


def verbose_requested(argv: Sequence[str]) -> bool:
  """Whether the command line asks for TensorFlow's logs (--verbose, -v N > 0)."""
  for i, arg in enumerate(argv):
    if arg in ("--verbose", "--verbose=true", "--verbose=True"):
      return True
    for prefix in ("--verbosity=", "-v="):
      if arg.startswith(prefix) and arg[len(prefix):].lstrip("-").isdigit():
        return int(arg[len(prefix):]) > 0
    if arg in ("-v", "--verbosity") and i + 1 < len(argv) and argv[i + 1].isdigit():
      return int(argv[i + 1]) > 0
  return False


from cdgan_tf.common import errors
from cdgan_tf.common import native_logs

UsageError = errors.UsageError  # The one usage-error type (`cdgan_tf.common.errors`).
_state = {"started": False, "verbose": False}


ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def use_onednn_kernels() -> bool:
  """Turns on TensorFlow's oneDNN CPU kernels unless the environment already decides.

  TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` once, when it is imported, and leaves oneDNN
  off on x86 CPUs without AVX512-VNNI / BF16 / AMX (this project's AVX2 machines). For
  the compute-bound CPU jobs (pair generation, GAN training) oneDNN's convolution
  gradients are much faster there (README "Throughput"). Results change by float
  rounding only; `TF_ENABLE_ONEDNN_OPTS=0` in the environment keeps TensorFlow's
  default kernels. Kernels on a GPU or TPU are not affected.

  Returns:
    True when oneDNN will be on (this call or the environment set it to 1 / true).
  """
  os.environ.setdefault(ONEDNN_VARIABLE, "1")
  return os.environ[ONEDNN_VARIABLE].strip().lower() in ("1", "true")


def start(argv: Sequence[str] = None, *, onednn: bool = False,
          tensorflow: bool = True) -> None:
  """Decides from the command line whether TensorFlow's logs reach the terminal.

  Call it first in an entry script, before anything imports TensorFlow: TensorFlow
  prints its native notices while it is imported. By default they are kept out
  (`--verbose`, or `-v N` / `--verbosity=N` with N > 0, brings them back). `run` calls
  it too (too late for the import-time notices when the script did not).

  Args:
    argv: The command line's arguments (default: sys.argv[1:]).
    onednn: The program is compute-bound on the CPU (pair generation, training): turn
      on oneDNN's kernels unless the environment says otherwise (`use_onednn_kernels`).
    tensorflow: Import TensorFlow now, its notices silenced; False for a program that
      seldom needs it (its import then only has TF_CPP_MIN_LOG_LEVEL to quiet it).
  """
  if _state["started"]:
    return
  _state["started"] = True
  if onednn:
    use_onednn_kernels()
  argv = sys.argv[1:] if argv is None else list(argv)
  _state["verbose"] = verbose_requested(argv)
  if _state["verbose"]:
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  native_logs.set_quiet(True)
  if not tensorflow:
    return
  with native_logs.silenced():  # Import-time notices, and cuInit on CPU-only machines.
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    # Initialising the devices here keeps their notices quiet too, but a multi-worker
    # strategy must configure collective ops before that happens.
    if "multi_worker" not in " ".join(argv):
      tf.config.list_logical_devices()


def usage_errors() -> tuple:
  """The exception types that are a user's mistake, not a bug (printed as one line).

  A plain ValueError is not among them: a library bug keeps its traceback.
  """
  from cdgan_tf.common import locks  # pylint: disable=import-outside-toplevel
  # files.WriteError can only come from an imported `files` (which imports TensorFlow:
  # a program that never needed it does not import it for its error path).
  files = sys.modules.get("cdgan_tf.common.files")
  return (errors.UsageError, FileNotFoundError, FileExistsError, NotADirectoryError,
          IsADirectoryError, PermissionError, locks.LockError,
          *((files.WriteError,) if files else ()))


class _OwnInfoOnly(std_logging.Filter):
  """Passes errors, and the info and warning lines of this project's own code only.

  TensorFlow and Keras log some lines through absl (e.g. "Sharding callback duration"
  at every checkpoint); those are dropped.
  """

  def __init__(self):
    super().__init__()
    package = os.path.dirname(os.path.abspath(__file__))
    self._own = (package + os.sep,
                 os.path.join(os.path.dirname(package), "tfrecords_builder") + os.sep,
                 os.path.abspath(sys.argv[0]) if sys.argv else "")

  def filter(self, record: std_logging.LogRecord) -> bool:
    path = os.path.abspath(record.pathname)
    return record.levelno >= std_logging.ERROR or path.startswith(self._own) or (
        path == self._own[2])


def _quiet_logging() -> None:
  """Short absl lines for people; TensorFlow's and Keras' own chatter off."""
  handler = logging.get_absl_handler()
  handler.setFormatter(std_logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
  handler.addFilter(_OwnInfoOnly())
  logging.set_verbosity(logging.INFO)
  import warnings  # pylint: disable=import-outside-toplevel
  warnings.filterwarnings("ignore")
  for name in ("tensorflow", "keras", "h5py"):
    std_logging.getLogger(name).setLevel(std_logging.ERROR)
  if "tensorflow" in sys.modules:
    sys.modules["tensorflow"].get_logger().setLevel(std_logging.ERROR)
    sys.modules["tensorflow"].autograph.set_verbosity(0)


def program_name() -> str:
  """evaluate.py, tfrecords_builder, tfrecords_builder.transfer_set, ..."""
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  if spec is not None and spec.name:  # python -m package[.module]
    return spec.name[:-len(".__main__")] if spec.name.endswith(".__main__") else spec.name
  return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "cdgan_tf"


def fail(message: str) -> None:
  """Prints `<program>: error: <message>` on one line and exits with code 2."""
  text = " ".join(str(message).split())
  print(f"{program_name()}: error: {text}", file=sys.stderr)
  sys.exit(USAGE_EXIT_CODE)


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"{e} (see --help)")


def _verbose() -> bool:
  return _state["verbose"] or bool(flags.FLAGS["verbose"].value)


def call_main(main: Callable[[Sequence[str]], object], argv: Sequence[str]):
  """Calls `main(argv)` with the one error path: a usage error (`usage_errors`) is one
  line and exit code 2 (its traceback with --verbose); a stop request (SIGTERM /
  SIGINT, the work saved) exits with its code; anything else raises as it is."""
  from cdgan_tf.common import interrupts  # pylint: disable=import-outside-toplevel
  try:
    return main(argv)
  except interrupts.Interrupted as e:  # SIGTERM / SIGINT: the work was saved.
    print(f"{program_name()}: {' '.join(str(e).split())}", file=sys.stderr)
    sys.exit(e.exit_code)
  except usage_errors() as e:
    if _verbose():
      raise
    fail(str(e))


def run(main: Callable[[Sequence[str]], object]) -> None:
  """Runs `main(argv)` like `absl.app.run`, with the one error path (`call_main`)."""
  start()

  def wrapped(argv):
    if _verbose():
      native_logs.set_quiet(False)
    else:
      _quiet_logging()
    if len(argv) > 1:
      fail(f"unexpected arguments: {' '.join(argv[1:])}")
    return call_main(main, argv)

  app.run(wrapped, flags_parser=_parse_flags)
