r"""The experiment runner: `python -m experiments run <recipe> [stage...]`.

  python -m experiments list                      # recipes and their stages
  python -m experiments show cifar10_weak         # its settings and every job's command
  python -m experiments run cifar10_weak attack evaluate --work=/work/scratch/cifar
  python -m experiments run cifar10_feature_chained gans --set steps=4000 --dry_run

A job runs unless it finished before with the same settings (hash recorded in
<work>/runner_state.json); the programs resume their own partial work. See
experiments/runner.py and experiments/recipes/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from cdgan_tf.common import native_logs

native_logs.set_quiet("--verbose" not in sys.argv)
_saved = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
with native_logs.silenced():  # TensorFlow's import notices (files and locks import it).
  # pylint: disable=g-import-not-at-top,wrong-import-position
  from experiments import recipes as recipes_lib
  from experiments import runner
  from cdgan_tf.common import interrupts
  from cdgan_tf.common import locks
if _saved is None:  # The programs it runs decide for themselves.
  del os.environ["TF_CPP_MIN_LOG_LEVEL"]
else:
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = _saved

PROGRAM = "python -m experiments"


class _Parser(argparse.ArgumentParser):
  """Usage errors as one line `<program>: error: ...`, exit 2 (the project's format)."""

  def error(self, message):
    print(f"{PROGRAM}: error: {message} (see --help)", file=sys.stderr)
    sys.exit(2)


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(prog=PROGRAM, description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="command", required=True)
  commands.add_parser("list", help="the recipes and their stages")
  for name, what in (("show", "a recipe's settings and jobs"), ("run", "run stages")):
    sub = commands.add_parser(name, help=what)
    sub.add_argument("recipe")
    if name == "run":
      sub.add_argument("stages", nargs="*", help="default: the recipe's default stages")
      sub.add_argument("--dry_run", action="store_true",
                       help="print what would run, run nothing")
      sub.add_argument("--python", default=sys.executable,
                       help="the Python that runs the programs")
    sub.add_argument("--work", default="", help="work folder (default: the recipe's)")
    sub.add_argument("--verbose", action="store_true", help="TensorFlow's import logs")
    sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="change a recipe setting (repeatable)")
  return parser


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  try:
    if args.command == "list":
      for name, entry in recipes_lib.registry().items():
        recipe = entry.factory(entry.settings, entry.default_work)
        stages = " ".join(s + ("*" if s in recipe.default_stages else "")
                          for s in recipe.stages)
        print(f"{name:24s} {entry.description}\n{'':24s} stages: {stages}")
      print("(* = run when no stage is named)")
      return 0
    work = os.path.abspath(args.work or recipes_lib.registry()[args.recipe].default_work
                           if args.recipe in recipes_lib.registry() else ".")
    recipe = recipes_lib.get_recipe(args.recipe, work, args.set)
    if args.command == "show":
      print(json.dumps(dataclasses.asdict(recipe.settings), indent=2))
      for stage, jobs in recipe.stages.items():
        print(f"[{stage}]")
        for job in jobs:
          print(f"  {job.name} ({job.settings_hash()}): {job.describe()}")
      return 0
    runner.run(recipe, args.stages, work,
               python=args.python, dry_run=args.dry_run)
  except (runner.RecipeError, locks.LockError) as e:
    print(f"{PROGRAM}: error: {e}", file=sys.stderr)
    return 2
  except runner.JobFailed as e:
    print(f"{PROGRAM}: {e}", file=sys.stderr)
    return 1
  except interrupts.Interrupted as e:  # SIGTERM / SIGINT: the job saved its work.
    print(f"{PROGRAM}: {e}", file=sys.stderr)
    return e.exit_code
  return 0


if __name__ == "__main__":
  sys.exit(main())
