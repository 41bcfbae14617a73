r"""Parameter counts and FLOPs per image of the CD-GAN networks.

FLOPs are measured by the TensorFlow profiler (`model_analyzer.profile` with
`ProfileOptionBuilder.float_operation()`) on the inference graph of each model: a
`tf.function` traced for a batch of ONE image, with its variables frozen into
constants. The profiler counts a multiply-add as 2 FLOPs and only counts ops that have
a registered FLOP statistic (Conv2D, MatMul, BiasAdd, element-wise math, ...);
depth_to_space and other data movement count 0.

As a cross-check, the multiply-accumulates of the Conv2D and Dense layers are also
computed from the layer shapes (MACs; 2 * MACs should be close to the profiler's total,
the rest being bias adds, batch norm, activations).

"params" counts all weights including batch-norm moving statistics; "trainable" only
the trained ones.

Usage:
  python benchmarks/model_size.py [--num_res_blocks=16 --filters=64 --scale=4 \
      --image_size=256 --output_json=results/bench/model_size.json]
"""

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

from absl import flags  # pylint: disable=g-bad-import-order
import keras
import tensorflow as tf

import benchlib
from cdgan_tf.models import discriminator
from cdgan_tf.models import generators

flags.DEFINE_integer("num_res_blocks", 16, "Generator residual blocks.", lower_bound=0)
flags.DEFINE_integer("filters", 64, "Generator filters.", lower_bound=1)
flags.DEFINE_integer("discriminator_filters", 64, "Discriminator filters.", lower_bound=1)
flags.DEFINE_integer("scale", 4, "Scale factor.", lower_bound=1)
flags.DEFINE_integer("image_size", 256, "Large image side.", lower_bound=2)
flags.DEFINE_string("output_json", "", "Write the figures to this JSON file.")
FLAGS = flags.FLAGS


def layer_macs(model: keras.Model, input_side: int) -> int:
  """Multiply-accumulates of the Conv2D and Dense layers for one input image."""
  x = tf.zeros([1, input_side, input_side, 3])
  # Output shapes for this input size (the generators have None spatial dims).
  probe = keras.Model(model.inputs, [l.output for l in model.layers
                                     if isinstance(l, (keras.layers.Conv2D,
                                                       keras.layers.Dense))])
  outputs = probe(x)
  layers = [l for l in model.layers
            if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
  total = 0
  for layer, out in zip(layers, outputs):
    kernel = layer.kernel.shape
    positions = 1
    for d in out.shape[1:-1]:
      positions *= int(d)
    fan_in = 1
    for d in kernel[:-1]:
      fan_in *= int(d)
    total += positions * fan_in * int(kernel[-1])
  return total


def main(argv):
  del argv
  large, small = FLAGS.image_size, FLAGS.image_size // FLAGS.scale
  gen = dict(scale=FLAGS.scale, num_res_blocks=FLAGS.num_res_blocks, filters=FLAGS.filters)
  models = [
      (f"sub generator {large}->{small}", generators.build_sub_generator(**gen), large),
      (f"super generator {small}->{large}", generators.build_super_generator(**gen), small),
      (f"discriminator {small}", discriminator.build_discriminator(
          small, FLAGS.discriminator_filters), small),
      (f"discriminator {large}", discriminator.build_discriminator(
          large, FLAGS.discriminator_filters), large),
  ]
  print(f"{'model':<28}{'params':>12}{'trainable':>12}{'profiler GFLOPs':>17}"
        f"{'conv/dense GMACs':>18}")
  rows = []
  for name, model, side in models:
    flops = benchlib.profiler_flops(model, side)
    macs = layer_macs(model, side)
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    rows.append({"model": name, "input_side": side, "params": model.count_params(),
                 "trainable": trainable, "gflops_per_image": flops / 1e9,
                 "conv_dense_gmacs": macs / 1e9})
    print(f"{name:<28}{model.count_params():>12,}{trainable:>12,}{flops / 1e9:>17.3f}"
          f"{macs / 1e9:>18.3f}")
  benchlib.write_results(FLAGS.output_json, "model_size", benchlib.flag_values(
      FLAGS, ["num_res_blocks", "filters", "discriminator_filters", "scale",
              "image_size"]), rows)


if __name__ == "__main__":
  cli.run(main)
