"""Training smoke, resume, TensorBoard and distribution tests on tiny records."""

import json
import os
import socket
import subprocess
import sys
from unittest import mock

from absl import flags
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from cdgan_tf import config as config_lib
from cdgan_tf import flags as cdgan_flags
from cdgan_tf.data import synthetic
from cdgan_tf.models import generators  # noqa: F401  (registers custom layers)
from cdgan_tf.training import controller as controller_lib
from cdgan_tf.training import gan_step as gan_step_lib
from tests.conftest import REPO_ROOT

SIZE, SCALE = 16, 2
TINY = dict(image_size=SIZE, scale=SCALE, batch_size=4, num_res_blocks=1, filters=8,
            discriminator_filters=8, steps_per_loop=2, summary_every=2,
            checkpoint_every=2, eval_every=4, deterministic=True)


def _write_records(directory, split, count, shards, seed):
  """`count` noisy pairs of SIZE px in `shards` files of `split` (`data.synthetic`)."""
  return synthetic.write_records(directory, split,
                                 synthetic.noise_pairs(SIZE, count, seed), shards)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("records"))
  _write_records(directory, "train", 32, 2, seed=0)
  _write_records(directory, "val", 8, 1, seed=1)
  return {"train_records": os.path.join(directory, "train-*"),
          "val_records": os.path.join(directory, "val-*")}


def _run(role, records, model_dir, **overrides):
  """What train_<role>.py's main() does, on flags of its own (not the global FLAGS, so
  evaluate.py's flags may share this process)."""
  values = flags.FlagValues()
  cdgan_flags.define_training_flags(values, role=role)
  settings = dict(TINY, **records, model_dir=str(model_dir), **overrides)
  values(["prog"] + [f"--{k}={v}" for k, v in settings.items()])
  return cdgan_flags.train_from_flags(role, ["prog"], values)


def _events(directory):
  accumulator = event_accumulator.EventAccumulator(
      str(directory), size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  return accumulator


def _scalar_steps(accumulator, tag):
  return [event.step for event in accumulator.Tensors(tag)]


@pytest.mark.parametrize("role", ["sub", "super"])
def test_main_trains_exports_and_summarizes(records, tmp_path, role):
  _run(role, records, tmp_path, train_steps=4, warmup_steps=2)
  export = tmp_path / "export" / "generator.keras"
  assert export.exists()
  info = json.loads((tmp_path / "export" / "generator.json").read_text())
  assert info["role"] == role and info["step"] == 4
  model = keras.models.load_model(export)
  in_size, out_size = (SIZE, SIZE // SCALE) if role == "sub" else (SIZE // SCALE, SIZE)
  assert info["input_size"] == in_size and info["output_size"] == out_size
  out = model(np.random.default_rng(0).random((2, in_size, in_size, 3), dtype=np.float32))
  assert out.shape == (2, out_size, out_size, 3)
  assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0

  train_events = _events(tmp_path / "train")
  tags = train_events.Tags()["tensors"]
  for tag in ("loss/generator_total", "loss/discriminator", "metrics/psnr",
              "learning_rate", "images_per_sec"):
    assert tag in tags, tags
  assert _scalar_steps(train_events, "loss/generator_total") == [2, 4]
  image_tags = [t for t in tags if t.startswith("images/")]
  assert image_tags, tags
  grid = tf.image.decode_png(train_events.Tensors(image_tags[0])[-1].tensor_proto.string_val[2])
  # Three panels side by side: adversarial | generated | clean at the larger size.
  assert grid.shape[1] == 3 * grid.shape[0]
  eval_events = _events(tmp_path / "eval")
  for tag in ("metrics/psnr", "metrics/ssim", "metrics/bicubic_psnr"):
    assert tag in eval_events.Tags()["tensors"]
  # Warm-up: the discriminator is not trained for the first 2 steps, so its mean loss
  # over the first summary window is exactly zero, and non-zero afterwards.
  d_values = [float(tf.make_ndarray(e.tensor_proto))
              for e in train_events.Tensors("loss/discriminator")]
  assert d_values[0] == 0.0 and d_values[1] > 0.0


def test_mirrored_two_replicas(records, tmp_path):
  assert len(tf.config.list_logical_devices("CPU")) >= 2
  _run("sub", records, tmp_path, train_steps=2, strategy="mirrored")
  assert (tmp_path / "export" / "generator.keras").exists()
  metrics = json.loads((tmp_path / "eval_metrics.json").read_text())
  assert metrics["step"] == 2 and np.isfinite(metrics["psnr"])


def _experiment(records, model_dir, train_steps):
  return config_lib.ExperimentConfig(
      model=config_lib.ModelConfig(num_res_blocks=1, filters=8, discriminator_filters=8),
      data=config_lib.DataConfig(train_pattern=records["train_records"], image_size=SIZE,
                                 scale=SCALE, batch_size=4, deterministic=True),
      train=config_lib.TrainConfig(role="super", train_steps=train_steps),
      runtime=config_lib.RuntimeConfig(model_dir=str(model_dir), steps_per_loop=1,
                                       checkpoint_every=3, summary_every=3))


def _step(experiment):
  return gan_step_lib.GanStep(experiment, tf.distribute.get_strategy())


def test_resume_restores_step_weights_and_optimizer(records, tmp_path):
  first = _step(_experiment(records, tmp_path, 3))
  controller_lib.run(first.experiment, step=first)
  saved_weights = [w.numpy() for w in first.generator.weights]
  saved_slots = [v.numpy() for v in first.generator_optimizer.variables]
  assert int(first.generator_optimizer.iterations.numpy()) == 3

  # A longer run extends without --allow_config_change (training.resume.extension).
  second = _step(_experiment(records, tmp_path, 6))
  controller_lib.restore(second, str(tmp_path / "checkpoints"))
  assert int(second.step.numpy()) == 3
  assert int(second.generator_optimizer.iterations.numpy()) == 3
  assert int(second.discriminator_optimizer.iterations.numpy()) == 3
  for a, b in zip(saved_weights, second.generator.weights):
    np.testing.assert_array_equal(a, b.numpy())
  for a, b in zip(saved_slots, second.generator_optimizer.variables):
    np.testing.assert_array_equal(a, b.numpy())
  controller_lib.run(second.experiment, step=second)
  assert int(second.step.numpy()) == 6
  assert int(second.generator_optimizer.iterations.numpy()) == 6
  steps = _scalar_steps(_events(tmp_path / "train"), "loss/generator_total")
  assert steps == [3, 6]  # The second run continued at 3; it did not start over.
  history = json.loads((tmp_path / "config_history.json").read_text())
  assert [(h["step"], h["changes"], h.get("extended")) for h in history] == [
      (3, {"train.train_steps": [3, 6]}, ["train.train_steps"])]
  assert json.loads((tmp_path / "config.json").read_text())["train"]["train_steps"] == 3


def test_finished_run_says_so_and_returns(records, tmp_path):
  controller_lib.run(_experiment(records, tmp_path, 2))
  checkpoints = sorted(os.listdir(tmp_path / "checkpoints"))
  again = _step(_experiment(records, tmp_path, 2))
  with mock.patch.object(controller_lib.logging, "info") as info:
    assert controller_lib.run(again.experiment, step=again) == {}
  assert any("already finished" in call.args[0] for call in info.call_args_list)
  assert int(again.step.numpy()) == 2
  assert sorted(os.listdir(tmp_path / "checkpoints")) == checkpoints  # Nothing new.


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_two_local_processes(records, tmp_path):
  ports = [_free_port(), _free_port()]
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  model_dir = tmp_path / "run"
  procs = []
  for index in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}),
               CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    args = [sys.executable, str(REPO_ROOT / "train_super.py"), "--strategy=multi_worker",
            f"--train_records={records['train_records']}", f"--model_dir={model_dir}",
            "--train_steps=3", "--steps_per_loop=1", "--summary_every=3",
            "--checkpoint_every=3", "--deterministic"]
    args += [f"--{k}={v}" for k, v in TINY.items()
             if k not in ("steps_per_loop", "summary_every", "checkpoint_every",
                          "eval_every", "deterministic")]
    log = open(tmp_path / f"worker{index}.log", "w")
    procs.append((subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=str(REPO_ROOT)), log))
  for proc, log in procs:
    try:
      proc.wait(timeout=240)
    finally:
      if proc.poll() is None:
        proc.kill()
      log.close()
  logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
  for proc, (_, _), text in zip([p for p, _ in procs], procs, logs):
    assert proc.returncode == 0, text[-3000:]
  # The chief exported; both workers reached step 3 with equal weights (synchronous
  # all-reduce), which the chief's checkpoint and the worker's log both show.
  assert (model_dir / "export" / "generator.keras").exists()
  assert not (model_dir / ".workers").exists()
  for text in logs:
    assert "Finished super GAN at step 3" in text
  fingerprints = [line.split("weights fingerprint ")[1].split()[0]
                  for text in logs for line in text.splitlines()
                  if "weights fingerprint" in line]
  assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1], logs


def test_recipe_flags_reach_the_run(records, tmp_path):
  """train_super.py with the purifier-quality levers: chained on a trained sub generator,
  clean pairs and a feature loss; the run records them."""
  _run("sub", records, tmp_path / "sub", train_steps=2)
  inputs = keras.Input((SIZE, SIZE, 3))
  feature_net = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(inputs))
  feature_net.save(tmp_path / "features.keras")
  _run("super", records, tmp_path / "super", train_steps=2,
       sub_model=str(tmp_path / "sub"), clean_pair_fraction=0.5,
       feature_extractor=str(tmp_path / "features.keras"), feature_layer="gap",
       feature_weight=1.0)
  config = json.loads((tmp_path / "super" / "config.json").read_text())
  assert config["train"]["sub_model"] == str(tmp_path / "sub")
  assert config["data"]["clean_pair_fraction"] == 0.5
  assert (config["loss"]["feature_extractor"], config["loss"]["feature_layer"]) == (
      str(tmp_path / "features.keras"), "gap")
  info = json.loads((tmp_path / "super" / "export" / "generator.json").read_text())
  assert info["sub_model"] == str(tmp_path / "sub") and info["role"] == "super"
  feature = _events(tmp_path / "super" / "train").Tensors("loss/generator_feature")
  assert float(tf.make_ndarray(feature[-1].tensor_proto)) > 0
