"""Parameter counts and FLOPs per image of the CD-GAN networks.

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
  python benchmarks/model_size.py [--num_res_blocks 16] [--filters 64] [--scale 4]
      [--image_size 256]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework import convert_to_constants  # noqa: E402
from tensorflow.python.profiler import model_analyzer  # noqa: E402
from tensorflow.python.profiler import option_builder  # noqa: E402

from cdgan_tf.models import discriminator  # noqa: E402
from cdgan_tf.models import generators  # noqa: E402


def profiler_flops(model: keras.Model, input_side: int) -> int:
  """FLOPs of one forward pass on [1, input_side, input_side, 3], by the TF profiler."""
  fn = tf.function(lambda x: model(x, training=False))
  concrete = fn.get_concrete_function(
      tf.TensorSpec([1, input_side, input_side, 3], tf.float32))
  frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
  graph_def = frozen.graph.as_graph_def()
  with tf.Graph().as_default() as graph:
    tf.graph_util.import_graph_def(graph_def, name="")
    options = (option_builder.ProfileOptionBuilder(
        option_builder.ProfileOptionBuilder.float_operation())
               .with_empty_output().build())
    result = model_analyzer.profile(graph, run_meta=tf.compat.v1.RunMetadata(),
                                    cmd="op", options=options)
  return int(result.total_float_ops)


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


def main():
  tf.get_logger().setLevel("ERROR")  # The profiler's v1 deprecation notices.
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_res_blocks", type=int, default=16)
  parser.add_argument("--filters", type=int, default=64)
  parser.add_argument("--discriminator_filters", type=int, default=64)
  parser.add_argument("--scale", type=int, default=4)
  parser.add_argument("--image_size", type=int, default=256)
  args = parser.parse_args()
  large, small = args.image_size, args.image_size // args.scale
  gen = dict(scale=args.scale, num_res_blocks=args.num_res_blocks, filters=args.filters)
  models = [
      (f"sub generator {large}->{small}", generators.build_sub_generator(**gen), large),
      (f"super generator {small}->{large}", generators.build_super_generator(**gen), small),
      (f"discriminator {small}", discriminator.build_discriminator(
          small, args.discriminator_filters), small),
      (f"discriminator {large}", discriminator.build_discriminator(
          large, args.discriminator_filters), large),
  ]
  print(f"{'model':<28}{'params':>12}{'trainable':>12}{'profiler GFLOPs':>17}"
        f"{'conv/dense GMACs':>18}")
  for name, model, side in models:
    flops = profiler_flops(model, side)
    macs = layer_macs(model, side)
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    print(f"{name:<28}{model.count_params():>12,}{trainable:>12,}{flops / 1e9:>17.3f}"
          f"{macs / 1e9:>18.3f}")


if __name__ == "__main__":
  main()
