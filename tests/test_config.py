"""Tests of the configuration dataclasses."""

import pytest

from cdgan_tf import config


def test_paper_defaults():
  cfg = config.ExperimentConfig()
  assert cfg.data.image_size == 256 and cfg.data.small_size == 64
  assert cfg.model.scale == 4 and cfg.model.num_res_blocks == 16 and cfg.model.filters == 64
  assert cfg.train.learning_rate == 1e-4 and cfg.train.beta_1 == 0.9
  assert config.PAPER_EPOCHS == {"sub": 20, "super": 250}


@pytest.mark.parametrize("kwargs", [
    dict(scale=3), dict(scale=0), dict(image_size=30, scale=4), dict(batch_size=0)])
def test_bad_data_config_is_refused(kwargs):
  with pytest.raises(ValueError):
    config.DataConfig(**kwargs)


def test_bad_choices_are_refused():
  with pytest.raises(ValueError, match="content_loss"):
    config.LossConfig(content_loss="l3")
  with pytest.raises(ValueError, match="strategy"):
    config.TrainConfig(strategy="gpu")
  with pytest.raises(ValueError, match="scale"):
    config.ExperimentConfig(model=config.ModelConfig(scale=2))
