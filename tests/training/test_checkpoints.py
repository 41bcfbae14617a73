"""Faults of training runs: a lost state file, damaged checkpoints, SIGTERM, read-only
folders. Each test runs train_sub.py as an operator would (subprocesses, tiny models)."""

import os
import shutil
import signal
import subprocess

import numpy as np
import pytest

from cdgan_tf.common import files
from cdgan_tf.models import generator_files
from cdgan_tf.training import checkpoints
from tests.training.test_resume import _command, _run, _wait_for, records  # noqa: F401


def _weights(model_dir):
  model, info = generator_files.load_generator(str(model_dir))
  return [w.numpy() for w in model.weights], info.step


def _assert_same_weights(a_dir, b_dir):
  (a, step_a), (b, step_b) = _weights(a_dir), _weights(b_dir)
  assert step_a == step_b
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def whole_run(records, tmp_path_factory):  # noqa: F811
  """An uninterrupted 8-step run (checkpoints at 4 and 8)."""
  model_dir = tmp_path_factory.mktemp("whole") / "run"
  result = _run(_command(records, model_dir, 8))
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir


def _copy(run, tmp_path):
  copy = tmp_path / "run"
  shutil.copytree(run, copy)
  shutil.rmtree(copy / "export")
  return copy


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["deleted", "cut_short"])
def test_lost_state_file_resumes_from_the_newest_checkpoint(records, whole_run,  # noqa: F811
                                                            tmp_path, damage):
  model_dir = _copy(whole_run, tmp_path)
  state = model_dir / "checkpoints" / checkpoints.STATE_FILE
  if damage == "deleted":
    state.unlink()
  else:
    state.write_bytes(state.read_bytes()[:7])
  kept = (model_dir / "checkpoints" / "ckpt-4.index").stat().st_mtime_ns
  result = _run(_command(records, model_dir, 8))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "from step 0" not in result.stderr
  assert f"Restored {model_dir}/checkpoints/ckpt-8 at step 8 (state file " in result.stderr
  assert "Training already finished: step 8 of 8" in result.stderr
  assert (model_dir / "checkpoints" / "ckpt-4.index").stat().st_mtime_ns == kept
  _assert_same_weights(whole_run, model_dir)


@pytest.mark.slow
@pytest.mark.parametrize("part", ["data", "index"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(records, whole_run,  # noqa: F811
                                                                  tmp_path, part):
  model_dir = _copy(whole_run, tmp_path)
  path = model_dir / "checkpoints" / ("ckpt-8.data-00000-of-00001" if part == "data"
                                      else "ckpt-8.index")
  content = bytearray(path.read_bytes())
  content[len(content) // 2] ^= 0xFF  # One flipped byte.
  path.write_bytes(bytes(content))
  result = _run(_command(records, model_dir, 8))
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [l for l in result.stderr.splitlines() if "Restored" in l]
  assert len(lines) == 1 and f"Restored {model_dir}/checkpoints/ckpt-4 at step 4" in lines[0]
  assert "ckpt-8 is damaged" in lines[0] and "moved to damaged/" in lines[0]
  assert (model_dir / "checkpoints" / "damaged" / path.name).read_bytes() == bytes(content)
  # Steps 5-8 redone from ckpt-4 give exactly the uninterrupted run's weights.
  _assert_same_weights(whole_run, model_dir)


@pytest.mark.slow
def test_all_checkpoints_damaged_is_refused_unless_restart(records, whole_run,  # noqa: F811
                                                           tmp_path):
  model_dir = _copy(whole_run, tmp_path)
  for index in (model_dir / "checkpoints").glob("*.index"):
    index.write_bytes(index.read_bytes()[:20])
  refused = _run(_command(records, model_dir, 8))
  assert refused.returncode == 2
  assert refused.stderr.strip().splitlines()[-1].startswith(
      f"train_sub.py: error: {model_dir}/checkpoints holds 2 checkpoints but none reads back "
      "whole (ckpt-8: ")
  assert "--restart" in refused.stderr and "Training sub GAN" not in refused.stderr
  restarted = _run(_command(records, model_dir, 8) + ["--restart"])
  assert restarted.returncode == 0, restarted.stderr[-3000:]
  assert "Training sub GAN from step 0 to 8" in restarted.stderr
  moved = list((model_dir / "checkpoints").glob("before-restart-*/ckpt-*.index"))
  assert sorted(p.name for p in moved) == ["ckpt-4.index", "ckpt-8.index"]
  _assert_same_weights(whole_run, model_dir)


@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_the_resume_equals_a_whole_run(
    records, tmp_path):  # noqa: F811
  steps = 40
  whole = _run(_command(records, tmp_path / "whole", steps))
  assert whole.returncode == 0, whole.stderr[-3000:]
  model_dir = tmp_path / "stopped"
  command = _command(records, model_dir, steps) + ["--checkpoint_every=1000"]
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
  assert _wait_for(lambda: len(list((model_dir / "train").glob("events*"))) > 0 and (
      os.path.getsize(next((model_dir / "train").glob("events*"))) > 2000), process)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=240)
  assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  last = stderr.strip().splitlines()[-1]
  assert last.startswith("train_sub.py: stopped by SIGTERM: saved "), last
  stopped_at = checkpoints.newest_step(str(model_dir / "checkpoints"))
  assert 0 < stopped_at < steps  # No checkpoint cadence before 1000: the signal saved it.
  assert f"ckpt-{stopped_at} at step {stopped_at} of {steps}" in last
  assert not (model_dir / ".lock").exists()
  resumed = _run(_command(records, model_dir, steps) + ["--checkpoint_every=1000"])
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"Training sub GAN from step {stopped_at} to {steps}" in resumed.stderr
  _assert_same_weights(tmp_path / "whole", model_dir)


def test_unwritable_checkpoints_folder_fails_before_the_work(records, tmp_path):  # noqa: F811
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  if os.geteuid() == 0:  # Root writes into read-only folders: a file in the way instead.
    (model_dir / "checkpoints").write_text("not a folder")
  else:
    (model_dir / "checkpoints").mkdir()
    os.chmod(model_dir / "checkpoints", 0o555)
  try:
    result = _run(_command(records, model_dir, 8))
  finally:
    if (model_dir / "checkpoints").is_dir():
      os.chmod(model_dir / "checkpoints", 0o755)
  assert result.returncode == 2
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f"train_sub.py: error: cannot write to {model_dir}/checkpoints (")
  assert last.endswith("); nothing was written")
  assert "Training sub GAN" not in result.stderr
  assert sorted(os.listdir(model_dir)) == ["checkpoints"]


def test_check_writable_names_the_folder(tmp_path):
  assert files.check_writable(str(tmp_path / "new")) == str(tmp_path / "new")
  assert os.listdir(tmp_path / "new") == []  # The probe is removed.
  (tmp_path / "file").write_text("x")
  with pytest.raises(files.WriteError, match=f"cannot write to {tmp_path}/file/sub"):
    files.check_writable(str(tmp_path / "file" / "sub"))
