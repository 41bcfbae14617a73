"""Tests of the configuration dataclasses and the role type."""

import json

import pytest

from cdgan_tf import config


def test_paper_defaults():
  cfg = config.ExperimentConfig()
  assert cfg.data.image_size == 256 and cfg.data.small_size == 64 and cfg.data.scale == 4
  assert cfg.model.num_res_blocks == 16 and cfg.model.filters == 64
  assert cfg.train.learning_rate == 1e-4 and cfg.train.beta_1 == 0.9
  assert (config.Role.SUB.paper_epochs, config.Role.SUPER.paper_epochs) == (20, 250)


def test_role_sizes():
  assert (config.Role.SUB.input_size(256, 4), config.Role.SUB.output_size(256, 4)) == (256, 64)
  assert (config.Role.SUPER.input_size(256, 4),
          config.Role.SUPER.output_size(256, 4)) == (64, 256)
  cfg = config.ExperimentConfig(train=config.TrainConfig(role="super"))
  assert cfg.role is config.Role.SUPER and (cfg.input_size, cfg.output_size) == (64, 256)


def test_config_round_trips_through_json():
  cfg = config.ExperimentConfig(data=config.DataConfig(image_size=32, scale=2),
                                train=config.TrainConfig(role="super", seed=3))
  content = json.loads(json.dumps(cfg.to_dict()))
  assert content["train"]["role"] == "super"
  assert config.ExperimentConfig.from_dict(content) == cfg


def test_one_scale_and_one_seed():
  """The geometry lives in DataConfig only and the seed in TrainConfig only."""
  fields = {name: {f.name for f in __import__("dataclasses").fields(cls)}
            for name, cls in (("model", config.ModelConfig), ("loss", config.LossConfig),
                              ("data", config.DataConfig), ("train", config.TrainConfig))}
  assert [n for n, f in fields.items() if "scale" in f] == ["data"]
  assert [n for n, f in fields.items() if "seed" in f] == ["train"]


@pytest.mark.parametrize("kwargs", [
    dict(scale=3), dict(scale=0), dict(image_size=30, scale=4), dict(batch_size=0)])
def test_bad_data_config_is_refused(kwargs):
  with pytest.raises(ValueError):
    config.DataConfig(**kwargs)


def test_bad_choices_are_refused():
  with pytest.raises(ValueError, match="content_loss"):
    config.LossConfig(content_loss="l3")
  with pytest.raises(ValueError, match="strategy"):
    config.RuntimeConfig(strategy="gpu")
  with pytest.raises(ValueError, match="role"):
    config.TrainConfig(role="middle")


def test_resume_field_lists_are_derived_from_the_config_dataclasses():
  from cdgan_tf.training import resume  # pylint: disable=import-outside-toplevel
  flat = {f"{section}.{name}" for section, fields in
          config.ExperimentConfig().to_dict().items() for name in fields}
  assert set(resume.SHAPE_FIELDS) <= flat and set(resume.OPERATIONAL_FIELDS) <= flat
  assert not set(resume.SHAPE_FIELDS) & set(resume.OPERATIONAL_FIELDS)
  assert config.field_paths(config.DataConfig, "scale") == ("data.scale",)
  with pytest.raises(ValueError, match="DataConfig has no field scal"):
    config.field_paths(config.DataConfig, "scal")
  with pytest.raises(ValueError, match="Role is not a section"):
    config.field_paths(config.Role, "SUB")


def test_runtime_settings_are_apart_from_the_hyperparameters():
  """TrainConfig holds what the run learns; where and how it runs is RuntimeConfig's."""
  train = {f.name for f in __import__("dataclasses").fields(config.TrainConfig)}
  assert not train & set(config.RUNTIME_FIELD_NAMES)
  assert set(config.RUNTIME_FIELD_NAMES) == {
      "model_dir", "steps_per_loop", "checkpoint_every", "summary_every", "eval_every",
      "eval_steps", "strategy", "tpu", "mixed_precision"}


def test_a_config_json_from_before_runtime_config_reads_the_same():
  """A run's config.json that kept model_dir, cadences and precision under "train"."""
  old = {"train": {"role": "super", "model_dir": "/runs/a", "train_steps": 9,
                   "summary_every": 3, "mixed_precision": "mixed_bfloat16", "seed": 4}}
  cfg = config.ExperimentConfig.from_dict(old)
  assert cfg.train == config.TrainConfig(role="super", train_steps=9, seed=4)
  assert cfg.runtime == config.RuntimeConfig(model_dir="/runs/a", summary_every=3,
                                             mixed_precision="mixed_bfloat16")
  assert config.ExperimentConfig.from_dict(cfg.to_dict()) == cfg


def test_flat_settings_go_to_their_sections():
  """config.from_flat: the one way flags become configs (scripts and benchmarks)."""
  names = [f.name for cls in (config.ModelConfig, config.LossConfig, config.DataConfig,
                              config.TrainConfig, config.RuntimeConfig)
           for f in __import__("dataclasses").fields(cls)]
  assert len(names) == len(set(names))  # Each flat name has one home.
  cfg = config.from_flat(role="super", filters=8, feature_weight=0.5,
                         train_records="r/train-*", val_records="r/val-*", scale=2,
                         image_size=32, seed=7, model_dir="/m", eval_every=0)
  assert (cfg.model.filters, cfg.loss.feature_weight) == (8, 0.5)
  assert (cfg.data.train_pattern, cfg.data.val_pattern, cfg.data.scale) == (
      "r/train-*", "r/val-*", 2)
  assert (cfg.train.role, cfg.train.seed) == (config.Role.SUPER, 7)
  assert (cfg.runtime.model_dir, cfg.runtime.eval_every) == ("/m", 0)
  assert cfg.data.batch_size == config.DataConfig().batch_size  # Not given: default.
  from cdgan_tf.common import errors  # pylint: disable=import-outside-toplevel
  with pytest.raises(errors.UsageError, match="no setting named bogus, fliters"):
    config.from_flat(fliters=8, bogus=1)
