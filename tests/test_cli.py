"""Every entry point: usage errors are one line and exit code 2; the terminal stays quiet."""

import concurrent.futures
import json
import os
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
from PIL import Image

from cdgan_tf import cli
from cdgan_tf.models import generator_files
from cdgan_tf.models import generators
from tests.conftest import REPO_ROOT


def _run(args, cwd, env_extra=None):
  env = dict(os.environ)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # The entry point must quiet TensorFlow itself.
  env.update(env_extra or {})
  return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=300)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  """A class folder of images, a Keras classifier, generators, odd files."""
  root = tmp_path_factory.mktemp("cli")
  rng = np.random.default_rng(0)
  for name in ("a", "b"):
    (root / "clean" / name).mkdir(parents=True)
    for i in range(2):
      Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
          root / "clean" / name / f"{i}.png")
  inputs = keras.Input((16, 16, 3))
  keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs))
              ).save(root / "clf.keras")
  for role, build in (("sub", generators.build_sub_generator),
                      ("super", generators.build_super_generator)):
    generator_files.save_generator(build(2, 1, 8), generator_files.GeneratorInfo(role, 2, 16),
                                   str(root / role))
  (root / "text.tflite").write_text("not a model")
  (root / "a_file").write_text("")
  (root / "out").mkdir()  # Each evaluate case's --output_dir goes inside.
  (root / "export" / "x").mkdir(parents=True)
  (root / "export" / "x" / "keep").write_text("")
  return root


def _cases(w):
  """name -> (args, expected message); every evaluate case writes to its own folder under
  w/out (evaluate locks its --output_dir, and the cases run concurrently)."""
  cases = _case_table(w)
  for name, (args, expected) in cases.items():
    if args[0] == "evaluate.py" and not any(a.startswith("--output_dir=") for a in args):
      args.append(f"--output_dir={w / 'out' / name.replace(' ', '_')}")
  return cases


def _case_table(w):
  evaluate = ["evaluate.py", f"--classifiers={w / 'clf.keras'}"]
  folder = f"--clean_dir={w / 'clean'}"
  return {
      "missing folder": (evaluate + [f"--clean_dir={w / 'nope'}"], "is not a directory"),
      "missing classifier": (["evaluate.py", folder, f"--classifiers={w / 'nope.keras'}"],
                             "is not a registry name"),
      "text file named .tflite": (["evaluate.py", folder,
                                   f"--classifiers={w / 'text.tflite'}"],
                                  "could not load TFLite file"),
      "unknown defense": (evaluate + [folder, "--defenses=blur3"],
                          "unknown defense 'blur3'; valid: cdgan, sub_only, super_only"),
      "unknown attack": (evaluate + [folder, "--attack=cw"], "unknown attack 'cw'"),
      "bad eps": (evaluate + [folder, "--attack=pgd_classifier", "--eps=abc"],
                  "eps='abc' is not a number"),
      "output_dir is a file": (["evaluate.py", folder, f"--classifiers={w / 'clf.keras'}",
                                f"--output_dir={w / 'a_file'}"], "is not a folder"),
      "bad flag value": (evaluate + [folder, "--batch_size=abc"], "--batch_size=abc"),
      "records glob matches nothing": (
          ["train_sub.py", f"--train_records={w / 'nope-*'}", f"--model_dir={w / 'run'}"],
          "no file matches --train_records"),
      "existing export folder": (
          ["export_defended.py", f"--sub_model={w / 'sub'}", f"--super_model={w / 'super'}",
           f"--export_dir={w / 'export'}"], "exists and is not empty"),
      "tflite with a classifier": (
          ["export_defended.py", f"--sub_model={w / 'sub'}", f"--super_model={w / 'super'}",
           f"--export_dir={w / 'export2'}", "--tflite=int8", "--classifier=resnet50_v2"],
          "--tflite exports the float purifier alone"),
      "swapped generators": (
          ["export_defended.py", f"--sub_model={w / 'super'}", f"--super_model={w / 'sub'}",
           f"--export_dir={w / 'export2'}"], "swapped"),
      "builder: missing folder": (
          ["-m", "tfrecords_builder", f"--adversarial_dir={w / 'nope'}",
           f"--clean_dir={w / 'clean'}", f"--output_dir={w / 'records'}"],
          "is not a directory"),
      "transfer set: unknown algorithm": (
          ["-m", "tfrecords_builder.transfer_set", f"--clean_dir={w / 'clean'}",
           f"--surrogate={w / 'clf.keras'}", "--algorithm=cw", f"--output_dir={w / 'adv'}"],
          "--algorithm"),
  }


def _entry_point(args):
  """`evaluate.py`, `-m tfrecords_builder`, ...: what a command line starts."""
  return tuple(args[:2]) if args[0] == "-m" else args[0]


def _run_cases(argv_lists, cwd, tmp_dir):
  """Runs the command lines of one entry point in one process (tests/entry_driver.py);
  returns one CompletedProcess-like (returncode, stderr) per command line."""
  cases, results = tmp_dir / "cases.json", tmp_dir / "results.json"
  cases.write_text(json.dumps(argv_lists))
  done = _run([str(REPO_ROOT / "tests" / "entry_driver.py"), str(cases), str(results)],
              cwd)
  assert done.returncode == 0, done.stderr[-3000:]
  return [types.SimpleNamespace(**r) for r in json.loads(results.read_text())]


@pytest.mark.slow
def test_usage_errors_are_one_line_with_exit_code_2(world, tmp_path):
  """One process per entry point (its first case starts TensorFlow as `python
  evaluate.py ...` does; the others re-run the script in that process): 5 TensorFlow
  start-ups instead of one per case."""
  cases = _cases(world)
  groups = {}
  for name, (args, _) in cases.items():
    groups.setdefault(_entry_point(args), []).append(name)

  def run_group(index_and_names):
    index, names = index_and_names
    folder = tmp_path / f"group{index}"
    folder.mkdir()
    return dict(zip(names, _run_cases([cases[n][0] for n in names], REPO_ROOT, folder)))

  runs = {}
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    for group_runs in pool.map(run_group, enumerate(groups.values())):
      runs.update(group_runs)
  assert len(groups) == 5 and set(runs) == set(cases)
  for name, (args, expected) in cases.items():
    run = runs[name]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2, (name, run.stderr[-2000:])
    assert len(lines) == 1, (name, lines)
    assert lines[0].split(":")[0] in (os.path.basename(args[0]), args[1]), (name, lines)
    assert "error: " in lines[0] and expected in lines[0], (name, lines)
  # Nothing half-written: no temporary or empty report files, no folder left behind.
  assert not any((world / "out").iterdir())
  assert not (world / "export2").exists()


@pytest.mark.slow
def test_verbose_shows_the_traceback_and_tensorflow_logs(world):
  args = ["evaluate.py", f"--clean_dir={world / 'nope'}",
          f"--classifiers={world / 'clf.keras'}", "--verbose"]
  run = _run(args, REPO_ROOT)
  assert run.returncode != 0 and "Traceback" in run.stderr
  assert "is not a directory" in run.stderr


def test_verbosity_is_read_from_the_command_line():
  assert not cli.verbose_requested(["--clean_dir=x"])
  assert cli.verbose_requested(["--verbose"])
  assert cli.verbose_requested(["-v", "1"]) and cli.verbose_requested(["--verbosity=2"])
  assert not cli.verbose_requested(["-v", "0"]) and not cli.verbose_requested(["-v=-1"])


def test_importing_cli_does_no_work():
  """No TensorFlow import and no reading of sys.argv until `start()` / `run()`."""
  code = ("import sys; sys.argv = ['prog', '--verbose']\n"
          "from cdgan_tf import cli\n"
          "import cdgan_tf\n"
          "assert 'tensorflow' not in sys.modules, 'TensorFlow imported'\n"
          "assert not cli._state['started'] and not cli._state['verbose']\n"
          "print('ok')")
  done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=120)
  assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


_ONEDNN_PROBE = ("import os\n"
                 "from cdgan_tf import cli\n"
                 "cli.start([], onednn=True)\n"
                 "from tensorflow.python.util import _pywrap_util_port\n"
                 "print(os.environ.get(cli.ONEDNN_VARIABLE), "
                 "_pywrap_util_port.IsMklEnabled())")


@pytest.mark.parametrize("setting, expected", [(None, "1 True"), ("0", "0 False")])
def test_onednn_start_turns_on_the_kernels_unless_the_environment_decides(setting,
                                                                          expected):
  """`start(onednn=True)` sets TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow reads it; a
  user's TF_ENABLE_ONEDNN_OPTS=0 wins (checked through TensorFlow's own answer too; on
  AVX-512 hosts TensorFlow turns oneDNN on by itself, so the variable is checked)."""
  env = {k: v for k, v in os.environ.items() if k != cli.ONEDNN_VARIABLE}
  if setting is not None:
    env[cli.ONEDNN_VARIABLE] = setting
  done = subprocess.run([sys.executable, "-c", _ONEDNN_PROBE], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.strip().splitlines()[-1] == expected


def test_the_compute_bound_programs_and_only_they_ask_for_onednn():
  """Pair generation and training opt in; evaluation and serving keep TensorFlow's
  default kernels (their tables and batch-invariance checks were made with them)."""
  opted_in = set()
  for path in sorted(REPO_ROOT.glob("*.py")) + sorted(
      REPO_ROOT.glob("tfrecords_builder/*.py")):
    if "cli.start(onednn=True)" in path.read_text():
      opted_in.add(str(path.relative_to(REPO_ROOT)))
  assert opted_in == {"train_sub.py", "train_super.py",
                      "tfrecords_builder/transfer_set.py", "tfrecords_builder/mix.py"}


def _run_main(main, capsys):
  """cli.call_main (run's error path) in this process; returns (exit code or None,
  stderr lines)."""
  try:
    cli.call_main(main, ["prog"])
  except SystemExit as e:
    return e.code, capsys.readouterr().err.strip().splitlines()
  return None, capsys.readouterr().err.strip().splitlines()


def test_a_usage_error_is_one_line_and_exit_code_2(capsys):
  def main(argv):
    del argv
    raise cli.UsageError("--widgets=3 must be even")

  code, lines = _run_main(main, capsys)
  assert code == 2 and lines == [f"{cli.program_name()}: error: --widgets=3 must be even"]


def test_a_library_bug_keeps_its_traceback(capsys):
  """A plain ValueError (here: what numpy raises for a bad reshape) is a bug."""
  def main(argv):
    del argv
    np.zeros(6).reshape(4, 4)

  with pytest.raises(ValueError, match="cannot reshape"):
    _run_main(main, capsys)
