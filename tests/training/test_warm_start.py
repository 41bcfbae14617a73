"""--init_generator: a run at step 0 starts from an exported generator; a resumed run
restores its own checkpoint; generators of another role, scale or size are refused."""

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import config as config_lib
from cdgan_tf.models import generator_files
from cdgan_tf.models import generators
from cdgan_tf.training import gan_step as gan_step_lib
from cdgan_tf.training import warm_start
from tests.training.test_controller import _run, records  # noqa: F401  (records: a fixture)

MODEL = config_lib.ModelConfig(num_res_blocks=1, filters=8, discriminator_filters=8)


def _export(folder, role="sub", scale=2, filters=8, seed=5):
  """A generator with recognisable weights (each tensor filled with its index + 0.5),
  exported as train_*.py would; returns (folder, its weights)."""
  model_config = config_lib.ModelConfig(num_res_blocks=1, filters=filters)
  tf.keras.utils.set_random_seed(seed)
  model = generators.build_generator(config_lib.Role(role), scale, model_config)
  weights = [np.full(w.shape, i + 0.5, np.float32) for i, w in enumerate(model.get_weights())]
  model.set_weights(weights)
  info = generator_files.GeneratorInfo(role=config_lib.Role(role), scale=scale,
                                       image_size=16, num_res_blocks=1, filters=filters,
                                       image_skip=False, step=7)
  generator_files.save_generator(model, info, str(folder))
  return str(folder), weights


def _experiment(init, role="sub"):
  return config_lib.ExperimentConfig(
      model=MODEL, data=config_lib.DataConfig(image_size=16, scale=2, batch_size=4),
      train=config_lib.TrainConfig(role=role, init_generator=init))


def _same(a, b):
  return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_step_starts_from_the_exported_weights(tmp_path):
  folder, weights = _export(tmp_path / "g")
  step = gan_step_lib.GanStep(_experiment(folder), tf.distribute.get_strategy())
  assert _same(step.generator.get_weights(), weights)
  fresh = gan_step_lib.GanStep(_experiment(""), tf.distribute.get_strategy())
  assert not _same(fresh.generator.get_weights(), weights)


@pytest.mark.parametrize("role,scale,filters,message", [
    ("super", 2, 8, "holds a super generator; this run trains the sub GAN"),
    ("sub", 4, 8, "is a scale-4 generator; this run has --scale=2"),
    ("sub", 2, 4, "has shape"),
])
def test_other_role_scale_or_size_is_refused(tmp_path, role, scale, filters, message):
  folder, _ = _export(tmp_path / "g", role=role, scale=scale, filters=filters)
  with pytest.raises(ValueError, match="--init_generator") as e:
    gan_step_lib.GanStep(_experiment(folder), tf.distribute.get_strategy())
  assert message in str(e.value)


def test_missing_file_names_the_path(tmp_path):
  with pytest.raises(generator_files.GeneratorFileError, match="no generator at"):
    warm_start.load_into(None, str(tmp_path / "nothing"), config_lib.Role.SUB, 2)


def test_restored_checkpoint_overrides_the_init_weights(tmp_path):
  """What the controller does on resume: build the step (init weights), then restore."""
  folder, weights = _export(tmp_path / "g")
  trained = gan_step_lib.GanStep(_experiment(folder), tf.distribute.get_strategy())
  trained.generator.set_weights([w * 0.0 + 0.25 for w in weights])  # "two steps later"
  trained.step.assign(2)
  path = tf.train.Checkpoint(**trained.checkpoint_items).save(str(tmp_path / "ckpt"))
  resumed = gan_step_lib.GanStep(_experiment(folder), tf.distribute.get_strategy())
  tf.train.Checkpoint(**resumed.checkpoint_items).restore(path).assert_consumed()
  assert int(resumed.step.numpy()) == 2
  assert _same(resumed.generator.get_weights(), trained.generator.get_weights())


@pytest.mark.slow
def test_flag_warm_starts_and_resume_keeps_the_run_weights(records, tmp_path):  # noqa: F811
  folder, weights = _export(tmp_path / "g")
  # Zero steps: the export is the generator as it starts, the loaded weights exactly.
  _run("sub", records, tmp_path / "zero", train_steps=0, init_generator=folder)
  exported, _ = generator_files.load_generator(str(tmp_path / "zero"))
  assert _same(exported.get_weights(), weights)
  # 0 -> 2, then resumed 2 -> 4, equals 0 -> 4 in one go: the resume restored the
  # run's step-2 weights, it did not start again from the init file.
  _run("sub", records, tmp_path / "resumed", train_steps=2, init_generator=folder)
  _run("sub", records, tmp_path / "resumed", train_steps=4, init_generator=folder)
  _run("sub", records, tmp_path / "straight", train_steps=4, init_generator=folder)
  resumed, info = generator_files.load_generator(str(tmp_path / "resumed"))
  straight, _ = generator_files.load_generator(str(tmp_path / "straight"))
  assert info.step == 4
  assert not _same(resumed.get_weights(), weights)
  for a, b in zip(resumed.get_weights(), straight.get_weights()):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
