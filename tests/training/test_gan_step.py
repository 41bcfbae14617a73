"""The GAN step on its own: it learns, and it is the same on 1 and 2 replicas."""

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import config as config_lib
from cdgan_tf import image_ops
from cdgan_tf.training import distribute
from cdgan_tf.training import gan_step as gan_step_lib

SIZE, SCALE, BATCH = 16, 2, 4


def _experiment(role="sub", warmup_steps=0, learning_rate=1e-3, **loss):
  return config_lib.ExperimentConfig(
      model=config_lib.ModelConfig(num_res_blocks=1, filters=8, discriminator_filters=8),
      loss=config_lib.LossConfig(**loss),
      data=config_lib.DataConfig(image_size=SIZE, scale=SCALE, batch_size=BATCH),
      train=config_lib.TrainConfig(role=role, seed=0,
                                   learning_rate=learning_rate, warmup_steps=warmup_steps))


def _pair(role, count, seed=0):
  """(input, target) of a role for smooth random images: a task a generator can learn."""
  rng = np.random.default_rng(seed)
  coarse = rng.random((count, 4, 4, 3)).astype(np.float32)
  clean = image_ops.resize(coarse, SIZE)
  if role == "sub":
    return clean, image_ops.resize(clean, SIZE // SCALE)
  return image_ops.resize(clean, SIZE // SCALE), clean


def _fixed_batches(batch):
  """A dataset fn that gives every replica the same `batch` (per-replica size)."""
  def dataset_fn(ctx):
    per_replica = ctx.get_per_replica_batch_size(BATCH)
    return tf.data.Dataset.from_tensors(
        tuple(t[:per_replica] for t in batch)).repeat()
  return dataset_fn


@pytest.mark.parametrize("role", ["sub", "super"])
def test_content_loss_falls_on_a_learnable_task(role):
  batch = _pair(role, BATCH)
  step = gan_step_lib.GanStep(_experiment(role, warmup_steps=40),
                              tf.distribute.get_strategy(),
                              train_dataset_fn=_fixed_batches(batch))
  losses = []
  for _ in range(8):
    step.train(5)
    losses.append(step.take_metrics()["generator_content"])
  assert int(step.step.numpy()) == 40
  assert losses[-1] < 0.5 * losses[0], losses
  assert all(b < a * 1.05 for a, b in zip(losses, losses[1:])), losses


def test_adversarial_phase_trains_the_discriminator():
  batch = _pair("sub", BATCH)
  step = gan_step_lib.GanStep(_experiment("sub", warmup_steps=2, adversarial_weight=1e-2),
                              tf.distribute.get_strategy(),
                              train_dataset_fn=_fixed_batches(batch))
  before = [w.numpy().copy() for w in step.discriminator.trainable_weights]
  step.train(2)  # Warm-up: content only, the discriminator is frozen.
  assert step.take_metrics()["discriminator"] == 0.0
  for a, b in zip(before, step.discriminator.trainable_weights):
    np.testing.assert_array_equal(a, b.numpy())
  step.train(3)
  metrics = step.take_metrics()
  assert metrics["discriminator"] > 0 and metrics["generator_adversarial"] > 0
  assert any(not np.array_equal(a, b.numpy())
             for a, b in zip(before, step.discriminator.trainable_weights))


def _run_two_steps(strategy, batch):
  step = gan_step_lib.GanStep(_experiment("sub", warmup_steps=1), strategy,
                              train_dataset_fn=_fixed_batches(batch))
  step.train(1)  # One warm-up step, then one adversarial step.
  warmup = step.take_metrics()
  step.train(1)
  return step, warmup, step.take_metrics()


def test_one_and_two_replicas_give_the_same_step():
  """The same global batch on 1 and on 2 replicas: same metrics, same weights.

  The global batch repeats its first half ([a, b, a, b]), so each of the 2 replicas
  holds [a, b] and its batch-norm statistics equal the single replica's.
  """
  assert len(tf.config.list_logical_devices("CPU")) >= 2
  half = _pair("sub", BATCH // 2, seed=3)
  global_batch = tuple(tf.concat([t, t], axis=0) for t in half)
  one, one_warmup, one_adv = _run_two_steps(tf.distribute.get_strategy(), global_batch)
  mirrored = distribute.make_strategy("mirrored")
  two, two_warmup, two_adv = _run_two_steps(mirrored, global_batch)
  assert two.strategy.num_replicas_in_sync == 2
  for name in gan_step_lib.TRAIN_METRICS:
    assert two_warmup[name] == pytest.approx(one_warmup[name], rel=1e-5, abs=1e-7), name
    assert two_adv[name] == pytest.approx(one_adv[name], rel=1e-4, abs=1e-6), name
  # A conv bias right before batch norm has a true gradient of 0; Adam turns its float
  # noise into steps of up to the learning rate, which differ run to run. Every other
  # weight must agree.
  compared = 0
  for model in ("generator", "discriminator"):
    names = {layer.name for layer in getattr(one, model).layers}
    for a, b in zip(getattr(one, model).weights, getattr(two, model).weights):
      layer, variable = a.path.split("/")[-2:]
      if variable == "bias" and layer.replace("_conv", "_bn") in names:
        continue
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6,
                                 err_msg=f"{model} {a.path}")
      compared += 1
  assert compared > 20


def test_evaluate_reports_generator_and_bicubic_against_the_target():
  inputs, targets = _pair("super", 6, seed=5)
  step = gan_step_lib.GanStep(
      _experiment("super"), tf.distribute.get_strategy(),
      train_dataset_fn=_fixed_batches((inputs[:BATCH], targets[:BATCH])),
      eval_dataset_fn=lambda ctx: tf.data.Dataset.from_tensor_slices(
          (inputs, targets)).batch(4))
  metrics = step.evaluate()
  bicubic = image_ops.resize(inputs, SIZE)
  generated = step.generator(inputs, training=False)
  assert metrics["bicubic_psnr"] == pytest.approx(
      float(tf.reduce_mean(image_ops.psnr(bicubic, targets))), rel=1e-5)
  assert metrics["bicubic_ssim"] == pytest.approx(
      float(tf.reduce_mean(image_ops.ssim(bicubic, targets))), rel=1e-5)
  assert metrics["psnr"] == pytest.approx(
      float(tf.reduce_mean(image_ops.psnr(generated, targets))), rel=1e-5)
  assert metrics["content"] == pytest.approx(
      float(tf.reduce_mean(tf.square(generated - targets))), rel=1e-4)


def test_chained_training_feeds_the_sub_generators_output(tmp_path):
  """The super GAN trained with sub_model learns from sub G's outputs: the step's
  input, its train metrics and its evaluation all see sub_G(large image)."""
  from cdgan_tf.models import generator_files  # pylint: disable=import-outside-toplevel
  from cdgan_tf.models import generators  # pylint: disable=import-outside-toplevel
  sub = generators.build_sub_generator(scale=SCALE, num_res_blocks=1, filters=8)
  generator_files.save_generator(
      sub, generator_files.GeneratorInfo("sub", SCALE, SIZE), str(tmp_path / "sub"))
  experiment = _experiment("super", warmup_steps=5)
  experiment = config_lib.ExperimentConfig(
      model=experiment.model, loss=experiment.loss, data=experiment.data,
      train=config_lib.TrainConfig(role="super", warmup_steps=5,
                                   sub_model=str(tmp_path / "sub")))
  _, targets = _pair("super", BATCH, seed=6)
  large = tf.clip_by_value(targets + 0.05, 0.0, 1.0)  # "adversarial" at the large size
  step = gan_step_lib.GanStep(
      experiment, tf.distribute.get_strategy(),
      train_dataset_fn=_fixed_batches((large, targets)),
      eval_dataset_fn=lambda ctx: tf.data.Dataset.from_tensors((large, targets)))
  by_hand = sub(large, training=False)
  np.testing.assert_allclose(step.generator_input(large), by_hand, atol=1e-6)
  expected_psnr = float(tf.reduce_mean(image_ops.psnr(
      step.generator(by_hand, training=True), targets)))
  step.train(1)
  assert step.take_metrics()["psnr"] == pytest.approx(expected_psnr, rel=1e-4)
  metrics = step.evaluate()
  assert metrics["bicubic_psnr"] == pytest.approx(float(tf.reduce_mean(image_ops.psnr(
      image_ops.resize(by_hand, SIZE), targets))), rel=1e-5)
  with pytest.raises(ValueError, match="super GAN only"):
    config_lib.TrainConfig(role="sub", sub_model=str(tmp_path / "sub"))


@pytest.mark.parametrize("kind", ["non_saturating", "least_squares"])
def test_discriminator_loss_is_the_hand_computed_one_on_real_and_generated(kind):
  """The step's discriminator loss = the loss by hand with D(target) as real and
  D(G(input)) as fake: swapped inputs, a wrong batch mean or sign would differ."""
  inputs, target = _pair("sub", BATCH, seed=3)
  step = gan_step_lib.GanStep(_experiment("sub", warmup_steps=0, adversarial_loss=kind),
                              tf.distribute.get_strategy(),
                              train_dataset_fn=_fixed_batches((inputs, target)))
  generated = step.generator(inputs, training=True)
  real = step.discriminator(target, training=True).numpy().reshape(-1).astype(np.float64)
  fake = step.discriminator(generated, training=True).numpy().reshape(-1).astype(
      np.float64)
  assert np.abs(real - fake).max() > 1e-3  # Else a swap would go unnoticed.
  if kind == "non_saturating":  # -log sigmoid(real) - log(1 - sigmoid(fake))
    per_example = np.log1p(np.exp(-real)) + np.log1p(np.exp(fake))
    swapped = np.log1p(np.exp(-fake)) + np.log1p(np.exp(real))
  else:
    per_example = (real - 1.0) ** 2 + fake ** 2
    swapped = (fake - 1.0) ** 2 + real ** 2
  step.train(1)
  got = step.take_metrics()["discriminator"]
  np.testing.assert_allclose(got, per_example.mean(), rtol=1e-4, atol=1e-6)
  assert abs(got - swapped.mean()) > 1e-4


def _requests_xla(loop) -> bool:
  """True when a traced loop calls a function marked for XLA compilation."""
  for concrete in loop._list_all_concrete_functions():  # pylint: disable=protected-access
    library = concrete.graph.as_graph_def().library.function
    if any(f.attr["_XlaMustCompile"].b for f in library):
      return True
  return False


@pytest.mark.slow  # XLA compiles the tiny step in ~40 s on a loaded 2-core machine.
def test_jit_compiled_step_equals_the_plain_step():
  batch = _pair("sub", BATCH, seed=4)
  steps = {}
  for jit in (False, True):
    steps[jit] = gan_step_lib.GanStep(_experiment("sub", adversarial_weight=1e-2),
                                      tf.distribute.get_strategy(),
                                      train_dataset_fn=_fixed_batches(batch),
                                      jit_compile=jit)
    steps[jit].train(2)
  assert [_requests_xla(s._loops[True]) for s in (steps[False], steps[True])] == [
      False, True]
  plain, compiled = steps[False].take_metrics(), steps[True].take_metrics()
  for name in gan_step_lib.TRAIN_METRICS:
    assert compiled[name] == pytest.approx(plain[name], rel=1e-4, abs=1e-6), name
  for a, b in zip(steps[False].generator.weights, steps[True].generator.weights):
    if a.path.endswith("bias"):  # Biases before batch norm: Adam-amplified float noise.
      continue
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-5, err_msg=a.path)
