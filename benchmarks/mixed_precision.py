r"""Mixed-precision training next to float32: step speed and the PSNR both reach.

Two `GanStep`s of the same role, size, seed, data order and initial weights, one per
Keras policy (--policies, default float32 and mixed_bfloat16), train in turns of
--turn_steps steps (so a load change on the machine hits both alike) for the same
--steps; each turn is timed (wall and this process's CPU time). Then both are evaluated
on the same validation batches: generator PSNR / SSIM next to plain bicubic resizing.

Data: the CIFAR-10 pair records of the experiments (--records_dir, default
/work/scratch/cifar/records or $CDGAN_CIFAR_RECORDS, with train-* and val-* shards);
without them, random synthetic pairs (speed only: their PSNR means nothing; the JSON
says which).

  python benchmarks/mixed_precision.py [--role=sub --image_size=32 --scale=2 \
      --batch_size=16 --num_res_blocks=4 --filters=32 --steps=400 \
      --output_json=results/bench/mixed_precision.json]
"""

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

import os  # pylint: disable=g-bad-import-order
import tempfile
import time

from absl import flags
import tensorflow as tf

import benchlib
import train_throughput
from cdgan_tf import config as config_lib
from cdgan_tf.data import synthetic
from cdgan_tf.training import distribute
from cdgan_tf.training import gan_step as gan_step_lib

flags.DEFINE_string("records_dir", os.environ.get("CDGAN_CIFAR_RECORDS",
                                                  "/work/scratch/cifar/records"),
                    "Folder of train-* and val-* pair records (absent: synthetic pairs).")
flags.DEFINE_enum("role", "sub", ["sub", "super"], "GAN role.")
flags.DEFINE_list("policies", ["float32", "mixed_bfloat16"], "Keras policies to compare "
                  "(the first is the reference).")
flags.DEFINE_integer("eval_steps", 40, "Validation batches (0: the whole split).",
                     lower_bound=0)
FLAGS = flags.FLAGS
# image_size, scale, batch_size, steps, warmup, num_res_blocks, filters, turn_steps,
# examples and output_json come from train_throughput's flags; other defaults here.
FLAGS.set_default("batch_size", 16)
FLAGS.set_default("num_res_blocks", 4)
FLAGS.set_default("filters", 32)
FLAGS.set_default("discriminator_filters", 32)
FLAGS.set_default("steps", 400)
FLAGS.set_default("turn_steps", 50)


def _experiment(policy: str, train: str, val: str) -> config_lib.ExperimentConfig:
  return config_lib.from_flat(
      **benchlib.flag_values(FLAGS, benchlib.SIZE_FLAGS), role=FLAGS.role,
      train_records=train, val_records=val, train_steps=FLAGS.warmup + FLAGS.steps,
      steps_per_loop=FLAGS.steps_per_loop, eval_steps=FLAGS.eval_steps,
      mixed_precision="none" if policy == "float32" else policy)


def _patterns(tmp: str):
  train = os.path.join(FLAGS.records_dir, "train-*")
  val = os.path.join(FLAGS.records_dir, "val-*")
  if tf.io.gfile.glob(train) and tf.io.gfile.glob(val):
    return train, val, f"records {FLAGS.records_dir}"
  pattern = synthetic.write_records(
      tmp, "train", synthetic.noise_pairs(FLAGS.image_size, FLAGS.examples, seed=0))
  return pattern, pattern, "synthetic random pairs (PSNR meaningless)"


def main(argv):
  del argv
  bad = [p for p in FLAGS.policies if p not in ("float32", "mixed_bfloat16",
                                                "mixed_float16")]
  if bad or len(FLAGS.policies) < 2:
    raise cli.UsageError(f"--policies={','.join(FLAGS.policies)}: give two or more of "
                         "float32, mixed_bfloat16, mixed_float16")
  strategy = tf.distribute.get_strategy()
  with tempfile.TemporaryDirectory() as tmp:
    train, val, data = _patterns(tmp)
    steps = {}
    for policy in FLAGS.policies:  # Same seed: same initial weights and data order.
      steps[policy] = gan_step_lib.GanStep(_experiment(policy, train, val), strategy)
    distribute.set_mixed_precision("none")
    wall = {p: 0.0 for p in steps}
    cpu = dict(wall)
    for policy, step in steps.items():
      step.train(FLAGS.warmup)  # Traces (untimed).
    done = 0
    while done < FLAGS.steps:
      num = min(FLAGS.turn_steps, FLAGS.steps - done)
      for policy, step in steps.items():
        start, start_cpu = time.perf_counter(), time.process_time()
        step.train(num)
        float(step.step.numpy())  # Waits for the turn's last step.
        wall[policy] += time.perf_counter() - start
        cpu[policy] += time.process_time() - start_cpu
      done += num
    metrics = {p: step.evaluate(FLAGS.eval_steps) for p, step in steps.items()}
  reference = FLAGS.policies[0]
  images = FLAGS.steps * FLAGS.batch_size
  rows = [{"policy": p, "images_per_sec": images / wall[p],
           "speed_vs_reference": wall[reference] / wall[p],
           "cpu_speed_vs_reference": cpu[reference] / cpu[p],
           "steps_trained": int(steps[p].step.numpy()),
           "wall_seconds": wall[p], "cpu_seconds": cpu[p], "eval": metrics[p]}
          for p in FLAGS.policies]
  print(f"\n{FLAGS.role} GAN, {FLAGS.image_size} px scale {FLAGS.scale}, batch "
        f"{FLAGS.batch_size}, {FLAGS.num_res_blocks} blocks x {FLAGS.filters} filters, "
        f"{FLAGS.warmup + FLAGS.steps} steps each; data: {data}")
  print(f"{'policy':16} {'images/s':>9} {'speed':>6} {'(CPU)':>6} {'val PSNR':>9} "
        f"{'SSIM':>6} {'bicubic PSNR':>13}")
  for row in rows:
    e = row["eval"]
    print(f"{row['policy']:16} {row['images_per_sec']:9.1f} {row['speed_vs_reference']:6.2f} "
          f"{row['cpu_speed_vs_reference']:6.2f} {e.get('psnr', float('nan')):9.2f} "
          f"{e.get('ssim', float('nan')):6.3f} {e.get('bicubic_psnr', float('nan')):13.2f}")
  benchlib.write_results(FLAGS.output_json, "mixed_precision", dict(
      benchlib.flag_values(FLAGS, ["role", "policies", "image_size", "scale", "batch_size",
                                   "steps", "warmup", "num_res_blocks", "filters",
                                   "discriminator_filters", "turn_steps", "eval_steps",
                                   "steps_per_loop"]), data=data), rows)


if __name__ == "__main__":
  cli.run(main)
