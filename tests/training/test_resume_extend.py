"""Runs that extend: a longer run continues without --allow_config_change, recorded."""

import json

import pytest
import tensorflow as tf

from cdgan_tf import config as config_lib
from cdgan_tf.training import resume
from tests.training.test_resume import _command
from tests.training.test_resume import _run
from tests.training.test_resume import records  # noqa: F401  (the module's fixture)


def _experiment(model_dir, train_steps=None, epochs=20, learning_rate=1e-4):
  return config_lib.ExperimentConfig(
      train=config_lib.TrainConfig(train_steps=train_steps, epochs=epochs,
                                   learning_rate=learning_rate),
      runtime=config_lib.RuntimeConfig(model_dir=str(model_dir)))


@pytest.mark.parametrize("first, second", [
    (dict(train_steps=4), dict(train_steps=6)),      # more steps
    (dict(epochs=2), dict(epochs=3)),                # more epochs, no train_steps
    (dict(train_steps=4, epochs=2), dict(train_steps=4, epochs=5)),  # epochs unused
])
def test_a_longer_run_is_recorded_without_permission(tmp_path, first, second):
  resume.check_and_record(str(tmp_path), _experiment(tmp_path, **first), 0)
  changes = resume.check_and_record(str(tmp_path), _experiment(tmp_path, **second), 4)
  history = json.loads((tmp_path / resume.HISTORY_FILE).read_text())
  assert len(history) == 1 and history[0]["step"] == 4
  assert history[0]["changes"] == {k: list(v) for k, v in changes.items()}
  assert history[0]["extended"] == sorted(changes) and changes
  assert resume.current_config(str(tmp_path))["train"]["train_steps"] == second.get(
      "train_steps")


@pytest.mark.parametrize("first, second, named", [
    (dict(train_steps=6), dict(train_steps=4), "train_steps 6 -> 4"),     # shorter
    (dict(epochs=3), dict(epochs=2), "epochs 3 -> 2"),
    (dict(epochs=3), dict(train_steps=900), "train_steps None -> 900"),  # unit switch
    (dict(train_steps=4), dict(train_steps=6, learning_rate=1e-3),
     "learning_rate 0.0001 -> 0.001;"),                                  # not the length
])
def test_other_changes_still_need_permission(tmp_path, first, second, named):
  resume.check_and_record(str(tmp_path), _experiment(tmp_path, **first), 0)
  with pytest.raises(resume.ConfigChangeError, match="allow_config_change") as raised:
    resume.check_and_record(str(tmp_path), _experiment(tmp_path, **second), 4)
  assert named in str(raised.value)
  assert not (tmp_path / resume.HISTORY_FILE).exists()
  resume.check_and_record(str(tmp_path), _experiment(tmp_path, **second), 4,
                          allow_changes=True)
  assert (tmp_path / resume.HISTORY_FILE).exists()


@pytest.mark.slow
def test_train_4_steps_then_extend_to_6_without_a_flag(records, tmp_path):  # noqa: F811
  model_dir = tmp_path / "run"
  assert _run(_command(records, model_dir, 4)).returncode == 0
  extended = _run(_command(records, model_dir, 6))
  assert extended.returncode == 0, extended.stderr[-3000:]
  assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-6")
  history = json.loads((model_dir / resume.HISTORY_FILE).read_text())
  assert [(h["step"], h["changes"], h["extended"]) for h in history] == [
      (4, {"train.train_steps": [4, 6]}, ["train.train_steps"])]
  refused = _run(_command(records, model_dir, 8) + ["--learning_rate=0.001"])
  assert refused.returncode == 2
  assert "learning_rate 0.0001 -> 0.001; pass --allow_config_change" in refused.stderr
  assert len(json.loads((model_dir / resume.HISTORY_FILE).read_text())) == 1
