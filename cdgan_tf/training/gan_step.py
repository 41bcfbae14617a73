"""The GAN step: one generator, one discriminator, two optimizers, any strategy.

`GanStep` is the "trainer" half of the orbit split (`orbit.StandardTrainer`): it owns the
models, the optimizers, the step counter and the train metrics, and its public
`train(num_steps)` runs that many steps inside one `tf.function` (a `tf.range` loop of
`strategy.run`). It knows nothing about checkpoints, summaries or cadence: the
`controller.Controller` decides when to call it and what to write.

Losses are per-example and averaged over the GLOBAL batch
(`tf.nn.compute_average_loss(..., global_batch_size)`), and the per-replica results are
summed across replicas, so gradients and reported metrics are the same for any number of
replicas holding the same global batch.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import keras
import tensorflow as tf

from cdgan_tf import config as config_lib
from cdgan_tf import image_ops
from cdgan_tf.classifiers import features
from cdgan_tf.common import errors
from cdgan_tf.data import pipeline
from cdgan_tf.models import discriminator as discriminator_lib
from cdgan_tf.models import generator_files
from cdgan_tf.models import generators
from cdgan_tf.training import distribute
from cdgan_tf.training import losses
from cdgan_tf.training import warm_start

TRAIN_METRICS = ("generator_total", "generator_content", "generator_adversarial",
                 "generator_feature", "discriminator", "psnr")
NUM_SUMMARY_IMAGES = 4
DatasetFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]


def total_steps(experiment: config_lib.ExperimentConfig) -> int:
  """train_steps if set, else epochs x (training examples // global batch size)."""
  train = experiment.train
  if train.train_steps is not None:
    return train.train_steps
  examples = pipeline.count_examples(experiment.data.train_pattern)
  steps_per_epoch = max(1, examples // experiment.data.batch_size)
  return train.epochs * steps_per_epoch


def _load_input_model(experiment: config_lib.ExperimentConfig) -> keras.Model:
  """The frozen sub generator of chained training, checked against the run's geometry."""
  path = experiment.train.sub_model
  model, info = generator_files.load_generator(path)
  data = experiment.data
  if info is not None and (info.role is not config_lib.Role.SUB or info.scale != data.scale):
    raise errors.UsageError(f"--sub_model {path} holds a {info.role.value} generator of scale "
                            f"{info.scale}; chained training needs a sub generator of scale "
                            f"{data.scale}")
  if info is not None and info.image_size and info.image_size != data.image_size:
    raise errors.UsageError(f"--sub_model {path} was trained at image_size {info.image_size} "
                            f"(scale {info.scale}); this super run has image_size "
                            f"{data.image_size} (scale {data.scale}): the image size differs")
  out = model(tf.zeros((1, data.image_size, data.image_size, 3)), training=False)
  if tuple(out.shape[1:3]) != (data.small_size, data.small_size):
    raise errors.UsageError(f"--sub_model {path} maps {data.image_size} px to "
                            f"{out.shape[1]} px, not {data.small_size}")
  model.trainable = False
  return model


class GanStep:
  """Trains one CD-GAN generator against its discriminator, `num_steps` at a time.

  With `experiment.train.sub_model` (super role) the generator's input is the frozen
  sub generator's output on the large adversarial image, what the super generator
  receives in the chain; with `experiment.loss.feature_extractor` the feature loss
  compares that network's features of (generated, clean).

  Args:
    experiment: The full configuration (role, sizes, losses, optimizer settings).
    strategy: The distribution strategy (see `distribute.make_strategy`); create it
      before anything else in the process.
    feature_extractor: Overrides the configured feature network: a callable images
      float32 [N, H, W, 3] in [0, 1] -> features (a tensor, or a list/dict of them),
      in inference mode, never trained.
    train_dataset_fn: InputContext -> dataset of (input, target) batches; default: the
      role's TFRecord pipeline (`pipeline.train_dataset`).
    eval_dataset_fn: The same for validation (default: `pipeline.eval_dataset` of the
      val pattern, if any).
    jit_compile: Compile each replica's step (forward, losses, gradients, optimizer
      updates) with XLA; the loop, iterator and cross-replica metric sums stay outside
      it. Meant for GPUs and TPUs (`benchmarks/accelerator_check.py`).
  """

  def __init__(self, experiment: config_lib.ExperimentConfig,
               strategy: tf.distribute.Strategy,
               feature_extractor: Optional[Callable] = None,
               train_dataset_fn: Optional[DatasetFn] = None,
               eval_dataset_fn: Optional[DatasetFn] = None,
               jit_compile: bool = False):
    self.experiment = experiment
    self.jit_compile = bool(jit_compile)
    self.strategy = strategy
    self.role = experiment.role
    self.global_batch_size = experiment.data.batch_size
    self.warmup_steps = experiment.train.warmup_steps
    data, seed = experiment.data, experiment.train.seed
    chained = bool(experiment.train.sub_model)
    # The training data start where the step counter is when the first train() call
    # creates the iterator (after a restore): a resumed run sees the same batches.
    self._train_dataset_fn = train_dataset_fn or (
        lambda ctx: pipeline.train_dataset(data, self.role, ctx, seed=seed,
                                           large_input=chained,
                                           start_step=int(self.step.numpy())))
    if eval_dataset_fn is None and data.val_pattern:
      eval_dataset_fn = lambda ctx: pipeline.eval_dataset(  # noqa: E731
          data, self.role, ctx, large_input=chained)
    self._eval_dataset_fn = eval_dataset_fn
    distribute.set_mixed_precision(experiment.runtime.mixed_precision)
    keras.utils.set_random_seed(experiment.train.seed)

    with strategy.scope():
      self.input_model = _load_input_model(experiment) if chained else None
      if feature_extractor is None and experiment.loss.feature_extractor:
        feature_extractor = features.load_feature_extractor(
            experiment.loss.feature_extractor, experiment.loss.feature_layer)
      if experiment.loss.feature_weight and feature_extractor is None:
        raise errors.UsageError("feature_weight > 0 needs a feature extractor "
                                "(--feature_extractor)")
      self._feature_extractor = feature_extractor
      self.generator = generators.build_generator(self.role, data.scale, experiment.model)
      if experiment.train.init_generator:  # A restored checkpoint overrides these.
        warm_start.load_into(self.generator, experiment.train.init_generator, self.role,
                             data.scale)
      self.discriminator = discriminator_lib.build_discriminator(
          experiment.output_size, filters=experiment.model.discriminator_filters,
          name=f"{self.role.value}_discriminator")
      self.generator_optimizer = self._make_optimizer()
      self.discriminator_optimizer = self._make_optimizer()
      self.generator_optimizer.build(self.generator.trainable_variables)
      self.discriminator_optimizer.build(self.discriminator.trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    self._sums = {name: tf.Variable(0.0, trainable=False) for name in TRAIN_METRICS}
    self._count = tf.Variable(0.0, trainable=False)
    self._loops = {}
    self._iterator = None
    self._eval_fn = None
    self._grid_fn = None

  def _make_optimizer(self):
    train = self.experiment.train
    optimizer = keras.optimizers.Adam(learning_rate=train.learning_rate, beta_1=train.beta_1)
    if self.experiment.runtime.mixed_precision == "mixed_float16":
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer

  @property
  def learning_rate(self) -> float:
    """The learning rate of both optimizers (`TrainConfig.learning_rate`)."""
    return float(self.experiment.train.learning_rate)

  @property
  def checkpoint_items(self) -> Dict[str, object]:
    """What a checkpoint of this step holds: step, both models, both optimizers."""
    return {"step": self.step, "generator": self.generator,
            "discriminator": self.discriminator,
            "generator_optimizer": self.generator_optimizer,
            "discriminator_optimizer": self.discriminator_optimizer}

  # ----------------------------------------------------------------- the step
  def _average(self, per_example: tf.Tensor) -> tf.Tensor:
    """Per-example values [n] on one replica -> their share of the global-batch mean."""
    return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)

  def generator_input(self, inputs: tf.Tensor) -> tf.Tensor:
    """What the generator receives: the batch's input, or the frozen sub generator's
    output on it (chained training)."""
    if self.input_model is None:
      return inputs
    return tf.cast(self.input_model(inputs, training=False), tf.float32)

  def _replica_step(self, batch, adversarial: bool) -> Dict[str, tf.Tensor]:
    generator_input, target = self.generator_input(batch[0]), batch[1]
    loss_config = self.experiment.loss
    with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
      generated = self.generator(generator_input, training=True)
      fake_logits = self.discriminator(generated, training=adversarial)
      g_losses = losses.generator_loss(target, generated, fake_logits, loss_config,
                                       feature_extractor=self._feature_extractor)
      if adversarial:
        g_loss = self._average(g_losses["total"])
        real_logits = self.discriminator(target, training=True)
        d_loss = self._average(losses.discriminator_loss(real_logits, fake_logits,
                                                         loss_config.adversarial_loss))
      else:  # Content-only warm-up: the discriminator is not updated.
        g_loss = self._average(loss_config.content_weight * g_losses["content"]
                               + loss_config.feature_weight * g_losses["feature"])
        d_loss = tf.constant(0.0)
      g_scaled, d_scaled = g_loss, d_loss
      if isinstance(self.generator_optimizer, keras.optimizers.LossScaleOptimizer):
        g_scaled = self.generator_optimizer.scale_loss(g_loss)
        d_scaled = self.discriminator_optimizer.scale_loss(d_loss)
    g_vars = self.generator.trainable_variables
    self.generator_optimizer.apply_gradients(zip(g_tape.gradient(g_scaled, g_vars), g_vars))
    if adversarial:
      d_vars = self.discriminator.trainable_variables
      self.discriminator_optimizer.apply_gradients(
          zip(d_tape.gradient(d_scaled, d_vars), d_vars))
    return {
        "generator_total": g_loss,
        "generator_content": self._average(g_losses["content"]),
        "generator_adversarial": self._average(g_losses["adversarial"]),
        "generator_feature": self._average(g_losses["feature"]),
        "discriminator": d_loss,
        "psnr": self._average(image_ops.psnr(tf.cast(generated, tf.float32), target)),
    }

  def _loop(self, adversarial: bool):
    """The compiled loop of `num_steps` steps (one per phase: warm-up, adversarial)."""
    if adversarial not in self._loops:
      replica_step = (tf.function(self._replica_step, jit_compile=True)
                      if self.jit_compile else self._replica_step)

      @tf.function
      def loop(iterator, num_steps):
        for _ in tf.range(num_steps):
          outputs = self.strategy.run(replica_step, args=(next(iterator), adversarial))
          for name in TRAIN_METRICS:
            self._sums[name].assign_add(
                self.strategy.reduce(tf.distribute.ReduceOp.SUM, outputs[name], axis=None))
          self._count.assign_add(1.0)
          self.step.assign_add(1)
      self._loops[adversarial] = loop
    return self._loops[adversarial]

  def train(self, num_steps: int) -> None:
    """Runs `num_steps` optimizer steps from the current step.

    Steps before `warmup_steps` train the generator on the content (and feature) loss
    only; the run is split at that boundary so each phase uses its compiled loop.
    The training iterator is created on the first call and continues across calls.
    """
    if self._iterator is None:
      self._iterator = iter(self.strategy.distribute_datasets_from_function(
          self._train_dataset_fn))
    remaining = int(num_steps)
    while remaining > 0:
      current = int(self.step.numpy())
      adversarial = current >= self.warmup_steps
      count = remaining if adversarial else min(remaining, self.warmup_steps - current)
      self._loop(adversarial)(self._iterator, tf.constant(count, tf.int32))
      remaining -= count

  def take_metrics(self) -> Dict[str, float]:
    """Mean train metrics over the steps since the last call (then resets them)."""
    count = max(float(self._count.numpy()), 1.0)
    means = {name: float(v.numpy()) / count for name, v in self._sums.items()}
    for v in self._sums.values():
      v.assign(0.0)
    self._count.assign(0.0)
    return means

  def weights_fingerprint(self) -> str:
    """A digest of the generator's trainable weights (equal on synchronous workers)."""
    total = sum(float(tf.reduce_sum(tf.abs(tf.cast(w, tf.float64))))
                for w in self.generator.trainable_weights)
    return f"{total:.10e}"

  # ----------------------------------------------------------------- evaluation
  def _replica_eval(self, batch):
    generator_input, target = self.generator_input(batch[0]), batch[1]
    generated = tf.cast(self.generator(generator_input, training=False), tf.float32)
    bicubic = image_ops.resize(generator_input, self.experiment.output_size)
    return {
        "content": tf.reduce_sum(losses.content_loss(
            target, generated, self.experiment.loss.content_loss)),
        "psnr": tf.reduce_sum(image_ops.psnr(generated, target)),
        "ssim": tf.reduce_sum(image_ops.ssim(generated, target)),
        "bicubic_psnr": tf.reduce_sum(image_ops.psnr(bicubic, target)),
        "bicubic_ssim": tf.reduce_sum(image_ops.ssim(bicubic, target)),
        "count": tf.cast(tf.shape(target)[0], tf.float32),
    }

  def evaluate(self, eval_steps: int = 0) -> Dict[str, float]:
    """Mean content loss, PSNR and SSIM of the generator on the validation data.

    Also the PSNR/SSIM of plain bicubic resizing of the same inputs, the baseline a
    learned generator has to beat. Returns {} without validation data.
    """
    if self._eval_dataset_fn is None:
      return {}
    if self._eval_fn is None:
      @tf.function
      def eval_fn(batch):
        outputs = self.strategy.run(self._replica_eval, args=(batch,))
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in outputs.items()}
      self._eval_fn = eval_fn
    dataset = self.strategy.distribute_datasets_from_function(self._eval_dataset_fn)
    totals = {}
    for i, batch in enumerate(dataset):
      if eval_steps and i >= eval_steps:
        break
      for k, v in self._eval_fn(batch).items():
        totals[k] = totals.get(k, 0.0) + float(v)
    count = totals.pop("count", 0.0)
    return {k: v / count for k, v in totals.items()} if count else {}

  # ----------------------------------------------------------------- image grids
  def first_batch(self, validation: bool = True):
    """One (input, target) batch on the host (not distributed), for image grids."""
    fn = self._eval_dataset_fn if validation and self._eval_dataset_fn else (
        self._train_dataset_fn)
    return next(iter(fn(tf.distribute.InputContext(1, 0, 1))))

  def summary_grid(self, batch) -> tf.Tensor:
    """input | generated | target for the first images of `batch`, compiled once.

    Returns:
      float32 [n, S, 3 * S, 3] in [0, 1], S the larger of the two sides.
    """
    if self._grid_fn is None:
      @tf.function
      def grid(inputs, target):
        generator_input = self.generator_input(inputs)
        generated = tf.cast(self.generator(generator_input, training=False), tf.float32)
        return image_ops.side_by_side(generator_input, generated, target)
      self._grid_fn = grid
    generator_input, target = batch
    return self._grid_fn(generator_input[:NUM_SUMMARY_IMAGES], target[:NUM_SUMMARY_IMAGES])
