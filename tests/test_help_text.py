"""The programs' --help keeps the line breaks of its examples."""

import ast
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

PROGRAMS = sorted(
    p for pattern in ("*.py", "benchmarks/*.py", "tfrecords_builder/*.py", "experiments/**/*.py")
    for p in REPO_ROOT.glob(pattern))


def _docstring(path):
  """(source text of the module docstring, its value), or None without one."""
  source = path.read_text(encoding="utf-8")
  body = ast.parse(source).body
  if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
          and isinstance(body[0].value.value, str)):
    return None
  return ast.get_source_segment(source, body[0].value), body[0].value.value


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_continued_example_lines_survive_in_the_docstring(path):
  found = _docstring(path)
  if found is None or "\\\n" not in found[0]:
    return
  source, value = found
  # A backslash at a line end inside a plain string joins the lines; a raw one keeps them.
  assert value.count("\\\n") == source.count("\\\n"), (
      f"{path.name}: its docstring joins continued lines; make it a raw string (r\"\"\")")


def test_evaluate_help_prints_the_examples_line_by_line():
  result = subprocess.run([sys.executable, str(REPO_ROOT / "evaluate.py"), "--help"],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
  assert result.returncode in (0, 1), result.stderr[-2000:]  # absl's --help exits 1
  assert ("--adversarial_dir=DAmageNet \\\n      --labels=val.txt --crop=damagenet"
          in result.stdout)
  assert "DAmageNet       --labels" not in result.stdout


def _flag_help(program, flag):
  """The --help text of `flag` in `program`'s --help, its lines joined ('' if absent)."""
  result = subprocess.run([sys.executable, str(REPO_ROOT / program), "--help"],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
  assert result.returncode in (0, 1), result.stderr[-2000:]
  lines = result.stdout.splitlines()
  for i, line in enumerate(lines):
    if line.strip().startswith(f"--{flag}:"):
      block = [line]
      for more in lines[i + 1:]:
        if more.strip().startswith("--") or not more.startswith("    "):
          break
        block.append(more)
      return " ".join(" ".join(block).split())
  return ""


@pytest.mark.parametrize("program,expected", [
    ("evaluate.py", "--sub_model: The sub generator of the CD-GAN to evaluate"),
    ("train_super.py", "--sub_model: Chained training: a trained sub generator"),
    ("train_sub.py", ""),
])
def test_sub_model_is_explained_for_the_program_that_runs(program, expected):
  """One name, one meaning per program: evaluate.py scores the sub generator,
  train_super.py learns from a frozen one, train_sub.py has no such flag."""
  found = _flag_help(program, "sub_model")
  assert found.startswith(expected) if expected else found == "", found
