"""Training throughput: the real loop next to a bare step, side by side in one run.

For each GAN role this measures, on the same trainer and at the same size:

  real loop   records on disk -> tf.data pipeline -> multi-step tf.function, with
              summaries (scalars and image grids), checkpoints and console progress on
  bare step   the same tf.function on one in-memory batch repeated (no input pipeline,
              no summaries, no checkpoints)

and prints images/s of both and their ratio (real / bare). Both are timed after a
warm-up (tracing excluded), so the ratio is the overhead of everything around the
step, and it holds on a noisy machine because both run back to back.

  python benchmarks/train_throughput.py [--image_size=32 --scale=2 --batch_size=8 \
      --steps=40 --num_res_blocks=16 --filters=64]
"""

import os
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from cdgan_tf import config as config_lib
from cdgan_tf.data import features
from cdgan_tf.data import pipeline
from cdgan_tf.training import controller as controller_lib
from cdgan_tf.training import gan_step as gan_step_lib

flags.DEFINE_integer("image_size", 32, "Large image side.")
flags.DEFINE_integer("scale", 2, "Scale factor.")
flags.DEFINE_integer("batch_size", 8, "Global batch size.")
flags.DEFINE_integer("steps", 40, "Timed steps of each measurement.")
flags.DEFINE_integer("warmup", 10, "Untimed steps before each measurement.")
flags.DEFINE_integer("num_res_blocks", 16, "Generator residual blocks.")
flags.DEFINE_integer("filters", 64, "Generator filters.")
flags.DEFINE_integer("examples", 256, "Synthetic training examples written to records.")
FLAGS = flags.FLAGS


def _write_records(directory: str, size: int, count: int) -> str:
  rng = np.random.default_rng(0)
  path = os.path.join(directory, "train-00000-of-00001.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(count):
      clean = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
      adversarial = np.clip(clean + rng.normal(0, 8, clean.shape), 0, 255).astype(np.uint8)
      writer.write(features.make_example(
          tf.io.encode_png(adversarial).numpy(), (size, size),
          tf.io.encode_png(clean).numpy(), (size, size), i % 10, f"x{i}").SerializeToString())
  return os.path.join(directory, "train-*")


def measure(role: str, records: str, model_dir: str) -> dict:
  """Images/s of the real loop (controller) and of the bare step for one role."""
  experiment = config_lib.ExperimentConfig(
      model=config_lib.ModelConfig(num_res_blocks=FLAGS.num_res_blocks,
                                   filters=FLAGS.filters),
      data=config_lib.DataConfig(train_pattern=records, image_size=FLAGS.image_size,
                                 scale=FLAGS.scale, batch_size=FLAGS.batch_size),
      train=config_lib.TrainConfig(role=role, model_dir=model_dir,
                                   train_steps=FLAGS.warmup, steps_per_loop=10,
                                   summary_every=10, checkpoint_every=20))
  strategy = tf.distribute.get_strategy()
  step = gan_step_lib.GanStep(experiment, strategy)
  controller_lib.Controller(step, FLAGS.warmup).run()  # Traces, writes the first files.
  start = time.perf_counter()
  controller_lib.Controller(step, FLAGS.warmup + FLAGS.steps).run()
  real = FLAGS.steps * FLAGS.batch_size / (time.perf_counter() - start)

  batch = next(iter(pipeline.build_dataset(experiment.data, role, training=True)))
  bare_step = gan_step_lib.GanStep(
      experiment, strategy,
      train_dataset_fn=lambda ctx: tf.data.Dataset.from_tensors(batch).repeat())
  bare_step.train(FLAGS.warmup)
  start = time.perf_counter()
  bare_step.train(FLAGS.steps)
  bare = FLAGS.steps * FLAGS.batch_size / (time.perf_counter() - start)
  return {"role": role, "real": real, "bare": bare, "ratio": real / bare}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  with tempfile.TemporaryDirectory() as tmp:
    records = _write_records(tmp, FLAGS.image_size, FLAGS.examples)
    rows = [measure(role, records, os.path.join(tmp, role)) for role in ("sub", "super")]
  print(f"\nimage_size={FLAGS.image_size} scale={FLAGS.scale} batch={FLAGS.batch_size} "
        f"blocks={FLAGS.num_res_blocks} filters={FLAGS.filters} steps={FLAGS.steps} "
        f"(CPU threads: {os.cpu_count()})")
  print(f"{'role':6} {'real loop img/s':>16} {'bare step img/s':>16} {'real/bare':>10}")
  for row in rows:
    print(f"{row['role']:6} {row['real']:16.1f} {row['bare']:16.1f} {row['ratio']:10.3f}")


if __name__ == "__main__":
  app.run(main)
