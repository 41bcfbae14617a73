"""Where `make demo` finds CIFAR-10: --data_dir, then CDGAN_DATA_DIR, then the sample."""

import os
import subprocess
import sys

import pytest

from experiments.cifar10 import find_cifar10
from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "experiments" / "cifar10" / "find_cifar10.py"


def _class_folders(root):
  for name in ("airplane", "automobile"):
    (root / "test" / name).mkdir(parents=True)
    (root / "test" / name / "0.png").write_bytes(b"")
  return root


def _find(args, data_env=None):
  # This checkout's library, not an installed copy (the script's folder is sys.path[0]).
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  env.pop("CDGAN_DATA_DIR", None)
  if data_env is not None:
    env["CDGAN_DATA_DIR"] = data_env
  return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=120)


def test_built_in_sample_is_complete_and_class_balanced():
  classes = sorted(p.name for p in (find_cifar10.SAMPLE / "test").iterdir() if p.is_dir())
  assert len(classes) == 10
  counts = {c: len(list((find_cifar10.SAMPLE / "test" / c).iterdir())) for c in classes}
  assert set(counts.values()) == {50}, counts


def test_lookup_order_flag_then_environment_then_sample(tmp_path):
  flag_dir = _class_folders(tmp_path / "flag")
  env_dir = _class_folders(tmp_path / "env")
  # Nothing given: the built-in sample (no ../shared, no network needed).
  run = _find([])
  assert run.returncode == 0, run.stderr
  assert run.stdout.strip() == str(find_cifar10.SAMPLE.resolve())
  # The environment beats the sample; the flag beats the environment.
  assert _find([], data_env=str(env_dir)).stdout.strip() == str(env_dir.resolve())
  run = _find([f"--data_dir={flag_dir}"], data_env=str(env_dir))
  assert run.stdout.strip() == str(flag_dir.resolve())
  # "sample" by name, whatever the environment says.
  run = _find(["--data_dir=sample"], data_env=str(env_dir))
  assert run.stdout.strip() == str(find_cifar10.SAMPLE.resolve())


def test_a_folder_without_class_folders_is_one_line_exit_2(tmp_path):
  run = _find([f"--data_dir={tmp_path}"])
  assert run.returncode == 2
  assert run.stderr.strip().count("\n") == 0 and "no CIFAR-10 class folders" in run.stderr
  assert run.stdout == ""


def test_resolve_names(tmp_path):
  assert find_cifar10.resolve("", "") == find_cifar10.SAMPLE
  assert find_cifar10.resolve("sample", "") == find_cifar10.SAMPLE
  with pytest.raises(Exception, match="no CIFAR-10 class folders"):
    find_cifar10.resolve(str(tmp_path), "")


@pytest.mark.parametrize("args", [[], ["--data_dir=/nonexistent/cifar"]])
def test_finding_a_folder_does_not_import_tensorflow(args):
  """`make demo` asks this first: without TFDS it needs no TensorFlow, on success or on
  a usage error (whose one-line path must not import it either)."""
  code = ("import runpy, sys\n"
          f"sys.argv = [{str(SCRIPT)!r}, *{args!r}]\n"
          "try:\n"
          f"  runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
          "except SystemExit as e:\n"
          "  print('exit', e.code)\n"
          "print('tensorflow' in sys.modules)\n")
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  env.pop("CDGAN_DATA_DIR", None)
  run = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=120)
  assert run.stdout.strip().splitlines()[-1] == "False", run.stdout + run.stderr
  assert ("exit 2" in run.stdout) == bool(args)
