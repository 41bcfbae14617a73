"""Runs several command lines of ONE entry point in one Python process (test helper).

  python tests/entry_driver.py CASES.json RESULTS.json

CASES.json: a list of argv lists, each what follows `python` on a command line
(`["evaluate.py", "--flag=..."]` or `["-m", "tfrecords_builder", "--flag=..."]`); all of
them name the same entry point. RESULTS.json gets, per case, {"returncode", "stderr"}.

Each case runs the entry point as `__main__` (runpy, as `python script.py` / `python -m`
does: its `cli.start()`, its imports, its flag definitions, `cli.run(main)`), with file
descriptors 1 and 2 pointed at files of its own, so TensorFlow's native log lines count
too. An exception that escapes is printed with its traceback and gives code 1, as the
interpreter does. The first case starts TensorFlow exactly as a fresh process would;
the later ones re-run the script in the warm process after resetting what absl keeps
between runs (the parsed flag values and the flags the script itself defines), which
saves the TensorFlow import and start-up of every case but the first.
"""

import json
import os
import runpy
import sys
import tempfile
import traceback


def _reset_flags() -> None:
  """Back to a fresh process's flags: the script's own flags gone, the rest unparsed."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  defined_by_main = flags.FLAGS.flags_by_module_dict().get("__main__", [])
  for flag in list(defined_by_main):
    for name in {flag.name, flag.short_name} - {None}:
      if name in flags.FLAGS:
        delattr(flags.FLAGS, name)
  flags.FLAGS.unparse_flags()


def _run_one(argv: list) -> int:
  """Runs `python *argv` in this process; returns its exit code."""
  try:
    if argv[0] == "-m":
      sys.argv = [argv[1], *argv[2:]]  # runpy puts the module's path in sys.argv[0].
      runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
      sys.argv = list(argv)
      runpy.run_path(argv[0], run_name="__main__")
  except SystemExit as e:
    if e.code is None:
      return 0
    if isinstance(e.code, int):
      return e.code
    print(e.code, file=sys.stderr)
    return 1
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
    return 1
  return 0


def main() -> None:
  cases_path, results_path = sys.argv[1:3]
  with open(cases_path, encoding="utf-8") as f:
    cases = json.load(f)
  sys.path[0] = os.getcwd()  # Where `python script.py` / `python -m` would look first.
  results = []
  for i, argv in enumerate(cases):
    if i:
      _reset_flags()
    with tempfile.TemporaryFile("w+b") as out, tempfile.TemporaryFile("w+b") as err:
      sys.stdout.flush()
      sys.stderr.flush()
      saved = os.dup(1), os.dup(2)
      os.dup2(out.fileno(), 1)
      os.dup2(err.fileno(), 2)
      try:
        code = _run_one(argv)
      finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
      err.seek(0)
      results.append({"returncode": code,
                      "stderr": err.read().decode("utf-8", "replace")})
  with open(results_path, "w", encoding="utf-8") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main()
