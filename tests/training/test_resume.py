"""Resuming safely: one writer per model_dir, kill -9 and resume, leftovers, events."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from cdgan_tf.common import locks
from cdgan_tf.models import generator_files
from cdgan_tf.training import resume
from tests.conftest import REPO_ROOT
from tests.training.test_controller import _write_records

FLAGS = ["--image_size=16", "--scale=2", "--batch_size=4", "--num_res_blocks=1",
         "--filters=8", "--discriminator_filters=8", "--deterministic", "--seed=3",
         "--steps_per_loop=1", "--summary_every=1", "--checkpoint_every=4",
         "--eval_every=0", "--warmup_steps=2"]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("records"))
  _write_records(directory, "train", 32, 2, seed=0)
  return os.path.join(directory, "train-*")


def _command(records, model_dir, steps):
  return [sys.executable, str(REPO_ROOT / "train_sub.py"), f"--train_records={records}",
          f"--model_dir={model_dir}", f"--train_steps={steps}", *FLAGS]


def _run(command):
  return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _wait_for(predicate, process, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return True
    if process.poll() is not None:
      return False
    time.sleep(0.05)
  return False


def _summary_steps(folder, tag="loss/generator_total"):
  accumulator = event_accumulator.EventAccumulator(
      str(folder), size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  return [e.step for e in accumulator.Tensors(tag)]


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(records, tmp_path):
  steps = 120
  whole = _run(_command(records, tmp_path / "whole", steps))
  assert whole.returncode == 0, whole.stderr[-3000:]

  killed_dir = tmp_path / "killed"
  process = subprocess.Popen(_command(records, killed_dir, steps), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  reached = _wait_for(lambda: (killed_dir / "checkpoints" / "ckpt-20.index").exists(),
                      process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert reached, "the run ended before it could be killed"
  assert not (killed_dir / "export").exists()
  resumed = _run(_command(records, killed_dir, steps))
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "took over a stale lock" in resumed.stderr

  a, _ = generator_files.load_generator(str(tmp_path / "whole"))
  b, _ = generator_files.load_generator(str(killed_dir))
  for x, y in zip(a.weights, b.weights):
    np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-5, atol=1e-6, err_msg=x.path)
  # TensorBoard shows every step once, however far the killed run had logged.
  assert _summary_steps(killed_dir / "train") == list(range(1, steps + 1))
  assert not (killed_dir / locks.LOCK_FILE).exists()


@pytest.mark.slow
def test_a_second_training_on_the_same_folder_is_refused(records, tmp_path):
  model_dir = tmp_path / "run"
  first = subprocess.Popen(_command(records, model_dir, 100000), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
  try:
    assert _wait_for(lambda: (model_dir / "checkpoints").exists(), first)
    second = _run(_command(records, model_dir, 100000))
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  assert second.returncode == 2
  lines = second.stderr.strip().splitlines()
  assert len(lines) == 1 and f"is in use by training of the sub GAN (pid {first.pid}" in (
      lines[0]), lines


@pytest.mark.slow
def test_changed_settings_are_refused_then_allowed_and_recorded(records, tmp_path):
  model_dir = tmp_path / "run"
  assert _run(_command(records, model_dir, 4)).returncode == 0
  changed = _run(_command(records, model_dir, 8) + ["--learning_rate=0.001"])
  assert changed.returncode == 2
  # The longer run alone would need no flag (test_resume_extend.py); the rate does.
  assert "learning_rate 0.0001 -> 0.001; pass --allow_config_change" in changed.stderr
  shape = _run(_command(records, model_dir, 4) + ["--filters=16"])
  assert shape.returncode == 2 and "filters 8 -> 16 change the models' shapes" in shape.stderr
  allowed = _run(_command(records, model_dir, 8) + ["--learning_rate=0.001",
                                                    "--allow_config_change"])
  assert allowed.returncode == 0, allowed.stderr[-3000:]
  history = json.loads((model_dir / resume.HISTORY_FILE).read_text())
  assert history[0]["step"] == 4
  assert history[0]["changes"] == {"train.learning_rate": [0.0001, 0.001],
                                   "train.train_steps": [4, 8]}
  original = json.loads((model_dir / resume.CONFIG_FILE).read_text())
  assert original["train"]["learning_rate"] == 0.0001  # The record is never overwritten.


def test_stale_lock_is_taken_over_and_a_live_one_refused(tmp_path):
  stale = {"pid": 999999, "host": "elsewhere", "started": "2026-01-01T00:00:00Z"}
  (tmp_path / locks.LOCK_FILE).write_text(json.dumps(stale))
  with locks.FolderLock(str(tmp_path), "training") as lock:
    assert lock.took_over["pid"] == 999999
    holder = json.loads((tmp_path / locks.LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid()
    with pytest.raises(locks.LockError, match=f"in use by training \\(pid {os.getpid()}"):
      locks.FolderLock(str(tmp_path), "training").acquire()
    # The message names the holder's job, not the refused one's.
    with pytest.raises(locks.LockError, match=f"in use by training \\(pid {os.getpid()}"):
      locks.FolderLock(str(tmp_path), "the experiment runner (other)").acquire()
  assert not (tmp_path / locks.LOCK_FILE).exists()
  with locks.FolderLock(str(tmp_path), "training") as lock:
    assert lock.took_over is None


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
  (tmp_path / "checkpoints" / "ckpt-3_temp").mkdir(parents=True)
  (tmp_path / "checkpoints" / "ckpt-3_temp" / "data").write_text("partial")
  (tmp_path / "export").mkdir()
  (tmp_path / "export" / ".generator.keras.tmp-999999.keras").write_bytes(b"")
  (tmp_path / "export" / "generator.keras").write_bytes(b"finished")
  removed = resume.clean_leftovers(str(tmp_path))
  assert len(removed) == 2
  assert not (tmp_path / "checkpoints" / "ckpt-3_temp").exists()
  assert sorted(os.listdir(tmp_path / "export")) == ["generator.keras"]


def test_trim_events_keeps_each_step_once(tmp_path):
  for first, last in ((1, 6), (5, 8)):  # A crashed run logged 1..6; resumed at 4.
    writer = tf.summary.create_file_writer(str(tmp_path))
    if first == 5:
      assert resume.trim_events(str(tmp_path), 4) == 2
    with writer.as_default():
      for step in range(first, last + 1):
        tf.summary.scalar("loss/generator_total", float(step), step=step)
    writer.close()
    time.sleep(1.1)  # Event file names carry the second they were created.
  assert _summary_steps(tmp_path) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_a_field_newer_than_the_runs_config_reads_as_its_default(tmp_path):
  """A run whose config.json predates DataConfig.augment_min_scale resumes unchanged."""
  from cdgan_tf import config as config_lib  # pylint: disable=import-outside-toplevel
  experiment = config_lib.ExperimentConfig.from_dict(
      {"train": {"role": "sub", "model_dir": str(tmp_path)}})
  old = experiment.to_dict()
  del old["data"]["augment_min_scale"]
  (tmp_path / resume.CONFIG_FILE).write_text(json.dumps(old))
  assert resume.check_and_record(str(tmp_path), experiment, step=4) == {}
  changed = config_lib.ExperimentConfig.from_dict(
      dict(experiment.to_dict(), data=dict(old["data"], augment_min_scale=0.5)))
  with pytest.raises(resume.ConfigChangeError, match="augment_min_scale 1.0 -> 0.5"):
    resume.check_and_record(str(tmp_path), changed, step=4)
