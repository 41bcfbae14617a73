"""The GAN trainer: one generator, one discriminator, two optimizers, any strategy.

Layout of `model_dir` (shared by both GAN roles):

  checkpoints/            tf.train.CheckpointManager: step, both models, both optimizers
  train/  eval/           TensorBoard event files
  export/generator.keras  the trained generator (Keras 3 native format), loadable with
                          `keras.models.load_model` after `import cdgan_tf.models.generators`
  export/generator.json   role, scale, sizes, step it was exported at
  config.json             the ExperimentConfig of the run

The step runs inside one `tf.function` that loops `steps_per_loop` times over
`strategy.run(...)`; losses are per-example and averaged over the global batch so the
gradients are the same for any number of replicas. The eager outer loop checkpoints,
writes summaries, evaluates, and prints progress. Rerunning the same command resumes
from the newest checkpoint (step, weights and optimizer slots).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Dict, Optional

from absl import logging
import keras
import tensorflow as tf

from cdgan_tf import config as config_lib
from cdgan_tf import image_ops
from cdgan_tf import losses
from cdgan_tf.data import pipeline
from cdgan_tf.models import discriminator as discriminator_lib
from cdgan_tf.models import generators
from cdgan_tf.training import distribute

GENERATOR_FILE = "generator.keras"
TRAIN_METRICS = ("generator_total", "generator_content", "generator_adversarial",
                 "generator_feature", "discriminator", "psnr")
EVAL_METRICS = ("content", "psnr", "ssim", "bicubic_psnr", "bicubic_ssim")
NUM_SUMMARY_IMAGES = 4


def build_generator(role: str, model_config: config_lib.ModelConfig) -> keras.Model:
  """The generator of a role: "sub" (large -> small) or "super" (small -> large)."""
  build = generators.build_sub_generator if role == "sub" else generators.build_super_generator
  return build(scale=model_config.scale, num_res_blocks=model_config.num_res_blocks,
               filters=model_config.filters, name=f"{role}_generator",
               image_skip=model_config.image_skip)


def output_size(role: str, data_config: config_lib.DataConfig) -> int:
  """Side of the generator's output (and the discriminator's input) for a role."""
  return data_config.small_size if role == "sub" else data_config.image_size


def total_steps(experiment: config_lib.ExperimentConfig) -> int:
  """train_steps if set, else epochs x (training examples // global batch size)."""
  train = experiment.train
  if train.train_steps is not None:
    return train.train_steps
  examples = pipeline.count_examples(experiment.data.train_pattern)
  steps_per_epoch = max(1, examples // experiment.data.batch_size)
  return train.epochs * steps_per_epoch


def _atomic_write_text(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(text)
  tf.io.gfile.rename(tmp, path, overwrite=True)


class GanTrainer:
  """Trains one CD-GAN generator against its discriminator.

  Args:
    experiment: The full configuration.
    strategy: The distribution strategy (see `distribute.make_strategy`); create it
      before anything else in the process.
    feature_extractor: Optional Keras model for the feature loss (weights frozen).
  """

  def __init__(self, experiment: config_lib.ExperimentConfig,
               strategy: tf.distribute.Strategy,
               feature_extractor: Optional[keras.Model] = None):
    self.experiment = experiment
    self.strategy = strategy
    self.role = experiment.train.role
    self.model_dir = experiment.train.model_dir
    if not self.model_dir:
      raise ValueError("model_dir must be set")
    self.is_chief = distribute.is_chief(strategy)
    self._own_dir = distribute.worker_dir(self.model_dir, strategy)
    self.global_batch_size = experiment.data.batch_size
    self.total_steps = total_steps(experiment)
    self._feature_extractor = feature_extractor
    if feature_extractor is not None:
      feature_extractor.trainable = False
    distribute.set_mixed_precision(experiment.train.mixed_precision)
    keras.utils.set_random_seed(experiment.train.seed)

    with strategy.scope():
      self.generator = build_generator(self.role, experiment.model)
      self.discriminator = discriminator_lib.build_discriminator(
          output_size(self.role, experiment.data),
          filters=experiment.model.discriminator_filters, name=f"{self.role}_discriminator")
      self.generator_optimizer = self._make_optimizer()
      self.discriminator_optimizer = self._make_optimizer()
      self.generator_optimizer.build(self.generator.trainable_variables)
      self.discriminator_optimizer.build(self.discriminator.trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    self._sums = {name: tf.Variable(0.0, trainable=False) for name in TRAIN_METRICS}
    self._count = tf.Variable(0.0, trainable=False)

    self.checkpoint = tf.train.Checkpoint(
        step=self.step, generator=self.generator, discriminator=self.discriminator,
        generator_optimizer=self.generator_optimizer,
        discriminator_optimizer=self.discriminator_optimizer)
    self.checkpoint_manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(self._own_dir, "checkpoints"), max_to_keep=3,
        step_counter=self.step, checkpoint_interval=experiment.train.checkpoint_every)
    self._loops = {}
    self._eval_fn = None

  # ----------------------------------------------------------------- construction
  def _make_optimizer(self):
    train = self.experiment.train
    optimizer = keras.optimizers.Adam(learning_rate=train.learning_rate, beta_1=train.beta_1)
    if train.mixed_precision == "mixed_float16":
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer

  def restore_or_initialize(self) -> int:
    """Restores the newest checkpoint if there is one. Returns the step."""
    path = self.checkpoint_manager.restore_or_initialize()
    if path:
      logging.info("Restored %s at step %d", path, int(self.step.numpy()))
    return int(self.step.numpy())

  # ----------------------------------------------------------------- the step
  def _replica_step(self, batch, adversarial: bool):
    adversarial_input, clean_target = batch
    loss_config = self.experiment.loss
    average = lambda x: tf.nn.compute_average_loss(  # noqa: E731
        x, global_batch_size=self.global_batch_size)
    with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
      generated = self.generator(adversarial_input, training=True)
      fake_logits = self.discriminator(generated, training=adversarial)
      g_losses = losses.generator_loss(clean_target, generated, fake_logits, loss_config,
                                       feature_extractor=self._feature_extractor)
      if adversarial:
        g_loss = average(g_losses["total"])
        real_logits = self.discriminator(clean_target, training=True)
        d_loss = average(losses.discriminator_loss(real_logits, fake_logits,
                                                   loss_config.adversarial_loss))
      else:  # Content-only warm-up: the discriminator is not updated.
        g_loss = average(loss_config.content_weight * g_losses["content"]
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
        "generator_content": average(g_losses["content"]),
        "generator_adversarial": average(g_losses["adversarial"]),
        "generator_feature": average(g_losses["feature"]),
        "discriminator": d_loss,
        "psnr": average(image_ops.psnr(tf.cast(generated, tf.float32), clean_target)),
    }

  def _train_loop(self, adversarial: bool):
    """A tf.function running `num_steps` steps on a distributed iterator."""
    if adversarial in self._loops:
      return self._loops[adversarial]

    @tf.function
    def loop(iterator, num_steps):
      for _ in tf.range(num_steps):
        outputs = self.strategy.run(self._replica_step, args=(next(iterator), adversarial))
        for name in TRAIN_METRICS:
          self._sums[name].assign_add(
              self.strategy.reduce(tf.distribute.ReduceOp.SUM, outputs[name], axis=None))
        self._count.assign_add(1.0)
        self.step.assign_add(1)

    self._loops[adversarial] = loop
    return loop

  def _take_means(self) -> Dict[str, float]:
    count = max(float(self._count.numpy()), 1.0)
    means = {name: float(v.numpy()) / count for name, v in self._sums.items()}
    for v in self._sums.values():
      v.assign(0.0)
    self._count.assign(0.0)
    return means

  # ----------------------------------------------------------------- evaluation
  def _bicubic(self, images):
    return image_ops.resize(images, output_size(self.role, self.experiment.data))

  def _replica_eval(self, batch):
    adversarial_input, clean_target = batch
    generated = tf.cast(self.generator(adversarial_input, training=False), tf.float32)
    bicubic = self._bicubic(adversarial_input)
    return {
        "content": tf.reduce_sum(losses.content_loss(
            clean_target, generated, self.experiment.loss.content_loss)),
        "psnr": tf.reduce_sum(image_ops.psnr(generated, clean_target)),
        "ssim": tf.reduce_sum(image_ops.ssim(generated, clean_target)),
        "bicubic_psnr": tf.reduce_sum(image_ops.psnr(bicubic, clean_target)),
        "bicubic_ssim": tf.reduce_sum(image_ops.ssim(bicubic, clean_target)),
        "count": tf.cast(tf.shape(clean_target)[0], tf.float32),
    }

  def evaluate(self, eval_steps: int = 0) -> Dict[str, float]:
    """Mean content loss, PSNR and SSIM of the generator on the val split.

    Also the PSNR/SSIM of plain bicubic resizing of the same inputs, the baseline a
    learned generator has to beat. Returns {} without a val split.
    """
    data = self.experiment.data
    if not data.val_pattern:
      return {}
    if self._eval_fn is None:
      @tf.function
      def eval_fn(batch):
        outputs = self.strategy.run(self._replica_eval, args=(batch,))
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in outputs.items()}
      self._eval_fn = eval_fn
    dataset = self.strategy.distribute_datasets_from_function(
        lambda ctx: pipeline.build_dataset(data, self.role, training=False, input_context=ctx))
    totals = {}
    for i, batch in enumerate(dataset):
      if eval_steps and i >= eval_steps:
        break
      for k, v in self._eval_fn(batch).items():
        totals[k] = totals.get(k, 0.0) + float(v)
    count = totals.pop("count", 0.0)
    if not count:
      return {}
    return {k: v / count for k, v in totals.items()}

  # ----------------------------------------------------------------- summaries
  def _summary_images(self, batch) -> tf.Tensor:
    adversarial_input, clean_target = batch
    adversarial_input = adversarial_input[:NUM_SUMMARY_IMAGES]
    clean_target = clean_target[:NUM_SUMMARY_IMAGES]
    generated = tf.cast(self.generator(adversarial_input, training=False), tf.float32)
    return image_ops.side_by_side(adversarial_input, generated, clean_target)

  def _first_local_batch(self, dataset_fn):
    """One batch on the host (not distributed) for image grids."""
    context = tf.distribute.InputContext(1, 0, 1)
    return next(iter(dataset_fn(context)))

  # ----------------------------------------------------------------- the run
  def train(self) -> Dict[str, float]:
    """Runs (or resumes) training to `total_steps`; returns the final eval metrics."""
    exp = self.experiment
    start = self.restore_or_initialize()
    if self.is_chief:
      tf.io.gfile.makedirs(self.model_dir)
      _atomic_write_text(os.path.join(self.model_dir, "config.json"),
                         json.dumps(dataclasses.asdict(exp), indent=2))
    if start >= self.total_steps:
      logging.info("Training already finished: step %d of %d in %s", start,
                   self.total_steps, self.model_dir)
      if self.is_chief and not tf.io.gfile.exists(self.export_path):
        self.export()
      return {}

    train_writer, eval_writer = self._writers()
    train_fn = lambda ctx: pipeline.build_dataset(exp.data, self.role, True, ctx)  # noqa
    iterator = iter(self.strategy.distribute_datasets_from_function(train_fn))
    grid_batch = None
    if self.is_chief:
      grid_batch = (self._first_local_batch(
          lambda ctx: pipeline.build_dataset(exp.data, self.role, False, ctx))
                    if exp.data.val_pattern else self._first_local_batch(train_fn))
    logging.info("Training %s GAN from step %d to %d (global batch %d, %d replica(s))",
                 self.role, start, self.total_steps, self.global_batch_size,
                 self.strategy.num_replicas_in_sync)

    step, run_start, last_eval = start, time.time(), {}
    window_start, window_steps = time.time(), 0
    train_cfg = exp.train
    while step < self.total_steps:
      adversarial = step >= train_cfg.warmup_steps
      boundary = self.total_steps if adversarial else min(train_cfg.warmup_steps,
                                                          self.total_steps)
      num = min(train_cfg.steps_per_loop, boundary - step,
                train_cfg.summary_every - step % train_cfg.summary_every)
      self._train_loop(adversarial)(iterator, tf.constant(num, tf.int32))
      step += num
      window_steps += num
      if step % train_cfg.summary_every == 0 or step == self.total_steps:
        elapsed = time.time() - window_start
        images_per_sec = window_steps * self.global_batch_size / max(elapsed, 1e-9)
        self._write_train_summaries(train_writer, step, self._take_means(), images_per_sec,
                                    grid_batch, start, run_start)
        window_start, window_steps = time.time(), 0
      self.checkpoint_manager.save(checkpoint_number=step, check_interval=True)
      if exp.data.val_pattern and train_cfg.eval_every and step % train_cfg.eval_every == 0:
        last_eval = self._run_eval(eval_writer, step)
    self.checkpoint_manager.save(checkpoint_number=step, check_interval=False)
    if exp.data.val_pattern and not (train_cfg.eval_every
                                     and step % train_cfg.eval_every == 0):
      last_eval = self._run_eval(eval_writer, step)
    train_writer.flush()
    eval_writer.flush()
    if self.is_chief:
      self.export()
    else:
      if tf.io.gfile.exists(self._own_dir):
        tf.io.gfile.rmtree(self._own_dir)
      try:  # The last worker out removes the shared scratch parent.
        os.rmdir(os.path.dirname(self._own_dir))
      except OSError:
        pass
    logging.info("Finished %s GAN at step %d in %.1f s (weights fingerprint %s)", self.role,
                 step, time.time() - run_start, self.weights_fingerprint())
    return last_eval

  def _writers(self):
    if not self.is_chief:
      return tf.summary.create_noop_writer(), tf.summary.create_noop_writer()
    return (tf.summary.create_file_writer(os.path.join(self.model_dir, "train")),
            tf.summary.create_file_writer(os.path.join(self.model_dir, "eval")))

  def _write_train_summaries(self, writer, step, means, images_per_sec, grid_batch,
                             start, run_start):
    with writer.as_default(step=step):
      for name, value in means.items():
        tf.summary.scalar(f"loss/{name}" if name != "psnr" else "metrics/psnr", value)
      tf.summary.scalar("learning_rate", self.experiment.train.learning_rate)
      tf.summary.scalar("images_per_sec", images_per_sec)
      if grid_batch is not None:
        tf.summary.image("images/adversarial_generated_clean", self._summary_images(grid_batch),
                         max_outputs=NUM_SUMMARY_IMAGES)
    done = step - start
    eta = (time.time() - run_start) / max(done, 1) * (self.total_steps - step)
    logging.info(
        "step %d/%d (%.0f%%)  g=%.4f (content %.4f, adv %.4f)  d=%.4f  psnr=%.2f dB  "
        "%.1f img/s  ETA %s", step, self.total_steps, 100.0 * step / self.total_steps,
        means["generator_total"], means["generator_content"],
        means["generator_adversarial"], means["discriminator"], means["psnr"],
        images_per_sec, time.strftime("%H:%M:%S", time.gmtime(eta)))

  def _run_eval(self, writer, step) -> Dict[str, float]:
    metrics = self.evaluate(self.experiment.train.eval_steps)
    if metrics:
      with writer.as_default(step=step):
        for name, value in metrics.items():
          tf.summary.scalar(f"metrics/{name}", value)
      logging.info("eval at step %d: %s", step,
                   "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
      if self.is_chief:
        _atomic_write_text(os.path.join(self.model_dir, "eval_metrics.json"),
                           json.dumps(dict(metrics, step=step), indent=2))
    return metrics

  def weights_fingerprint(self) -> str:
    """A digest of the generator's trainable weights (equal on synchronous workers)."""
    total = sum(float(tf.reduce_sum(tf.abs(tf.cast(w, tf.float64))))
                for w in self.generator.trainable_weights)
    return f"{total:.10e}"

  # ----------------------------------------------------------------- export
  @property
  def export_path(self) -> str:
    return os.path.join(self.model_dir, "export", GENERATOR_FILE)

  def export(self) -> str:
    """Saves the generator as a self-contained .keras file (atomically).

    The evaluation side loads it with `keras.models.load_model(path)` after
    `import cdgan_tf.models.generators`, without the checkpoint or optimizers. Under
    mixed precision the exported model is rebuilt in float32 with the same weights.
    """
    export_dir = os.path.dirname(self.export_path)
    tf.io.gfile.makedirs(export_dir)
    model = self.generator
    if self.experiment.train.mixed_precision != "none":
      distribute.set_mixed_precision("none")
      model = build_generator(self.role, self.experiment.model)
      model.set_weights(self.generator.get_weights())
      distribute.set_mixed_precision(self.experiment.train.mixed_precision)
    tmp = os.path.join(export_dir, f".tmp-{os.getpid()}-{GENERATOR_FILE}")
    model.save(tmp)
    os.replace(tmp, self.export_path)
    data = self.experiment.data
    info = {"role": self.role, "scale": data.scale, "image_size": data.image_size,
            "input_size": data.image_size if self.role == "sub" else data.small_size,
            "output_size": output_size(self.role, data),
            "num_res_blocks": self.experiment.model.num_res_blocks,
            "filters": self.experiment.model.filters,
            "image_skip": self.experiment.model.image_skip, "step": int(self.step.numpy())}
    _atomic_write_text(os.path.join(export_dir, "generator.json"), json.dumps(info, indent=2))
    logging.info("Exported the %s generator to %s", self.role, self.export_path)
    return self.export_path


def run(experiment: config_lib.ExperimentConfig, feature_extractor_path: str = "",
        strategy: Optional[tf.distribute.Strategy] = None) -> Dict[str, float]:
  """Creates the strategy (unless given), the trainer, and trains to the end.

  Args:
    experiment: The configuration.
    feature_extractor_path: Optional Keras model file for the feature loss.
    strategy: An existing strategy; by default made from experiment.train.strategy
      before any other TensorFlow op (a multi_worker requirement).

  Returns:
    The final validation metrics ({} without a val split or when already finished).
  """
  if strategy is None:
    strategy = distribute.make_strategy(experiment.train.strategy, experiment.train.tpu)
  feature_extractor = None
  if feature_extractor_path:
    if not os.path.exists(feature_extractor_path):
      raise FileNotFoundError(f"feature extractor {feature_extractor_path} does not exist")
    with strategy.scope():
      feature_extractor = keras.models.load_model(feature_extractor_path, compile=False)
  trainer = GanTrainer(experiment, strategy, feature_extractor)
  return trainer.train()
