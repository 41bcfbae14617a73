r"""GAN sizing: training speed of several generator / discriminator sizes and bottlenecks.

What sets how long a GAN takes to train at the paper's geometry (256 px) on a given
machine: for each role, bottleneck scale and sizing, one `GanStep` (adversarial steps,
no warm-up) trains on one in-memory batch repeated (no input pipeline, summaries or
checkpoints: `train_throughput.py` measures those apart). All steps are built and traced
first, then train in turns of --turn_steps steps, so a load change on a shared machine
hits every sizing alike; images/s is the median turn's, and "speed_vs_first" (over the
first sizing's, same role and scale) is the figure to compare across runs. Generator and
discriminator parameter counts are listed with each.

  python benchmarks/gan_sizing.py [--image_size=256 --scales=4,2 --batch_size=8 \
      --sizings=8x32d16,8x32d64 --roles=sub,super --steps=20 \
      --feature_extractor=PATH --feature_weight=0.2 \
      --output_json=results/bench/gan_sizing.json]

A sizing is BLOCKSxFILTERSdD: residual blocks, generator filters and the
discriminator's first-conv filters (8x32d16 is the shipped ImageNet GANs'). With
--feature_extractor (any feature network `train_sub.py` accepts) each step also pays for
the feature loss, as the shipped recipe does.
"""

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

import re  # pylint: disable=g-bad-import-order
import time

from absl import flags
import tensorflow as tf

import benchlib
from cdgan_tf import config as config_lib
from cdgan_tf.common import checks
from cdgan_tf.training import gan_step as gan_step_lib

flags.DEFINE_integer("image_size", 256, "Large image side.", lower_bound=2)
flags.DEFINE_list("scales", ["4", "2"], "Bottleneck scale factors (powers of 2).")
flags.DEFINE_integer("batch_size", 8, "Global batch size.", lower_bound=1)
flags.DEFINE_list("sizings", ["8x32d16", "8x32d64"], "BLOCKSxFILTERSdD entries; the "
                  "first is the reference of each role and scale.")
flags.DEFINE_list("roles", ["sub", "super"], "GAN roles to measure.")
flags.DEFINE_integer("steps", 20, "Timed steps of each sizing (rounded down to whole "
                     "turns).", lower_bound=1)
flags.DEFINE_integer("warmup", 1, "Untimed turns of each before timing (tracing).",
                     lower_bound=1)
flags.DEFINE_integer("turn_steps", 5, "Steps per turn; images/s is the median turn's.",
                     lower_bound=1)
flags.DEFINE_string("feature_extractor", "", "Feature network of the feature loss "
                    "(empty: no feature loss).")
flags.DEFINE_float("feature_weight", 0.2, "Feature loss weight (with "
                   "--feature_extractor).", lower_bound=0.0)
flags.DEFINE_string("output_json", "", "Write the figures to this JSON file.")
FLAGS = flags.FLAGS

_SIZING = re.compile(r"^(\d+)x(\d+)d(\d+)$")


def parse_sizing(text: str) -> tuple:
  """"8x32d16" -> (8, 32, 16): residual blocks, filters, discriminator filters.

  Raises:
    cli.UsageError: not of the form BLOCKSxFILTERSdD with FILTERS and D >= 1.
  """
  match = _SIZING.match(text.strip())
  if not match or int(match.group(2)) < 1 or int(match.group(3)) < 1:
    raise cli.UsageError(f"--sizings: {text!r} is not BLOCKSxFILTERSdD (e.g. 8x32d16)")
  return tuple(int(g) for g in match.groups())


def _parse_scales(values) -> list:
  scales = []
  for text in values:
    _, scale = checks.check_geometry(FLAGS.image_size, int(text) if text.isdigit() else text,
                                     cli.UsageError, names=("--image_size", "--scales"))
    scales.append(scale)
  return scales


def _gan_step(role: str, scale: int, sizing: tuple) -> gan_step_lib.GanStep:
  blocks, filters, d_filters = sizing
  size, batch = FLAGS.image_size, FLAGS.batch_size
  experiment = config_lib.from_flat(
      num_res_blocks=blocks, filters=filters, discriminator_filters=d_filters,
      image_skip=True, feature_extractor=FLAGS.feature_extractor,
      feature_weight=FLAGS.feature_weight if FLAGS.feature_extractor else 0.0,
      image_size=size, scale=scale, batch_size=batch, role=role, warmup_steps=0)
  small = size // scale
  inputs, targets = (size, small) if role == "sub" else (small, size)
  rng = tf.random.Generator.from_seed(0)
  batch_data = (rng.uniform((batch, inputs, inputs, 3)),
                rng.uniform((batch, targets, targets, 3)))
  return gan_step_lib.GanStep(
      experiment, tf.distribute.get_strategy(),
      train_dataset_fn=lambda _: tf.data.Dataset.from_tensors(batch_data).repeat())


def main(argv):
  del argv
  sizings = [(text, parse_sizing(text)) for text in FLAGS.sizings]
  scales = _parse_scales(FLAGS.scales)
  for role in FLAGS.roles:
    checks.check_choice("--roles", role, ("sub", "super"), cli.UsageError)
  steps = {}
  for role in FLAGS.roles:
    for scale in scales:
      for text, sizing in sizings:
        steps[(role, scale, text)] = _gan_step(role, scale, sizing)

  def turn(step):
    def run():
      step.train(FLAGS.turn_steps)
      float(step.step.numpy())  # Waits for the turn's last step.
    return run

  # The first (untimed) turn of each traces; then every step trains in turns.
  seconds = benchlib.interleaved_seconds(
      {key: turn(step) for key, step in steps.items()},
      repeats=max(1, FLAGS.steps // FLAGS.turn_steps), warmup=FLAGS.warmup)
  images = FLAGS.turn_steps * FLAGS.batch_size
  rows = []
  for (role, scale, text), step in steps.items():
    first = seconds[(role, scale, sizings[0][0])]["median"]
    median = seconds[(role, scale, text)]["median"]
    rows.append({"role": role, "scale": scale, "sizing": text,
                 "images_per_sec": images / median, "speed_vs_first": first / median,
                 "generator_params": int(step.generator.count_params()),
                 "discriminator_params": int(step.discriminator.count_params())})
  print(f"\n{FLAGS.image_size} px, batch {FLAGS.batch_size}, {FLAGS.steps} adversarial "
        f"steps each in turns of {FLAGS.turn_steps} (median turn), feature loss: "
        f"{FLAGS.feature_extractor or 'none'}")
  print(f"{'role':6} {'scale':>5} {'sizing':>10} {'images/s':>9} {'speed':>6} "
        f"{'G params':>9} {'D params':>9}")
  for row in rows:
    print(f"{row['role']:6} {row['scale']:5d} {row['sizing']:>10} "
          f"{row['images_per_sec']:9.2f} {row['speed_vs_first']:6.2f} "
          f"{row['generator_params']:9d} {row['discriminator_params']:9d}")
  benchlib.write_results(FLAGS.output_json, "gan_sizing", benchlib.flag_values(
      FLAGS, ["image_size", "scales", "batch_size", "sizings", "roles", "steps", "warmup",
              "turn_steps", "feature_extractor", "feature_weight"]), rows)


if __name__ == "__main__":
  cli.run(main)
