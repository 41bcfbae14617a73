r"""Purifier inference next to the machine's matmul peak, measured in the same run.

The CD-GAN chain at the paper's size (256 input -> sub G -> 64 -> super G -> 256; 16
residual blocks x 64 filters; random weights, the cost does not depend on them) is run
on one batch in each inference option:

  float32    `CdganPurifier(...)`, the default
  bfloat16   `CdganPurifier(..., compute_dtype="bfloat16")` (AVX512-BF16 / AMX CPUs, TPUs)
  float16    `CdganPurifier(..., compute_dtype="float16")` (GPUs; optional here)
  jit        `CdganPurifier(..., jit_compile=True)` (XLA)

next to a square float32 matmul (the machine's practical peak: `benchlib.matmul_runner`)
and, for reference, a bfloat16 one. All take turns in every round
(`benchlib.interleaved_seconds`), so a load change hits them alike. Reported per option:
images/s, achieved GFLOP/s (profiler FLOPs of the float32 chain / median time), its
fraction of the float32 matmul peak, its speed relative to float32, and its largest
pixel difference from float32 on the same batch. TensorFlow uses every core it is
given; measure fewer with `taskset -c 0 python benchmarks/purifier_inference.py`.

  python benchmarks/purifier_inference.py [--batch_size=8 --repeats=5 \
      --options=float32,bfloat16,jit \
      --output_json=results/bench/purifier_inference.json]
"""

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

import os  # pylint: disable=g-bad-import-order

from absl import flags
import keras
import tensorflow as tf

import benchlib
from cdgan_tf.defenses import cdgan
from cdgan_tf.models import generators

OPTIONS = {"float32": {}, "bfloat16": {"compute_dtype": "bfloat16"},
           "float16": {"compute_dtype": "float16"}, "jit": {"jit_compile": True}}
flags.DEFINE_integer("image_size", 256, "Purifier working size (paper: 256).", lower_bound=2)
flags.DEFINE_integer("scale", 4, "Scale factor (paper: 4).", lower_bound=1)
flags.DEFINE_integer("batch_size", 8, "Images per call.", lower_bound=1)
flags.DEFINE_integer("num_res_blocks", 16, "Generator residual blocks.", lower_bound=0)
flags.DEFINE_integer("filters", 64, "Generator filters.", lower_bound=1)
flags.DEFINE_list("options", ["float32", "bfloat16", "jit"],
                  f"Inference options to measure, from {', '.join(OPTIONS)}.")
flags.DEFINE_integer("repeats", 5, "Timed rounds (medians reported).", lower_bound=1)
flags.DEFINE_integer("matmul_size", 2048, "Side of the peak-measuring matmul.",
                     lower_bound=64)
flags.DEFINE_list("batch_sizes", [], "Also time the float32 chain at each of these "
                  "batch sizes (images/s against batch size, `batch_sweep` in the JSON); "
                  "empty: skip.")
flags.DEFINE_integer("sweep_images", 16, "Images per timed unit of the batch-size sweep "
                     "(cut into batches of each size).", lower_bound=1)
flags.DEFINE_string("output_json", "", "Write the figures to this JSON file.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  unknown = [o for o in FLAGS.options if o not in OPTIONS]
  if unknown or "float32" not in FLAGS.options:
    raise cli.UsageError(f"--options: {unknown or FLAGS.options} (choose from "
                         f"{', '.join(OPTIONS)}; float32 is the reference and required)")
  keras.utils.set_random_seed(0)
  size, scale, batch = FLAGS.image_size, FLAGS.scale, FLAGS.batch_size
  gen = dict(scale=scale, num_res_blocks=FLAGS.num_res_blocks, filters=FLAGS.filters)
  sub, sup = generators.build_sub_generator(**gen), generators.build_super_generator(**gen)
  images = tf.random.stateless_uniform((batch, size, size, 3), seed=[0, 1])
  purifiers = {name: cdgan.CdganPurifier(sub, sup, size, scale, **OPTIONS[name])
               for name in FLAGS.options}
  functions = {name: tf.function(p.__call__) for name, p in purifiers.items()}
  flops_per_image = benchlib.function_flops(purifiers["float32"], [1, size, size, 3])
  outputs = {name: fn(images) for name, fn in functions.items()}  # Traces.
  matmul, matmul_flops = benchlib.matmul_runner(FLAGS.matmul_size)
  matmul_bf16, _ = benchlib.matmul_runner(FLAGS.matmul_size, tf.bfloat16)
  runs = {"matmul_float32": matmul, "matmul_bfloat16": matmul_bf16}
  runs.update({name: (lambda fn=fn: fn(images).numpy()) for name, fn in functions.items()})
  seconds = benchlib.interleaved_seconds(runs, FLAGS.repeats)

  peak = matmul_flops / seconds["matmul_float32"]["median"]
  peak_bf16 = matmul_flops / seconds["matmul_bfloat16"]["median"]
  reference = seconds["float32"]["median"]
  rows = []
  for name in FLAGS.options:
    median = seconds[name]["median"]
    achieved = flops_per_image * batch / median
    rows.append({
        "option": name, "seconds_per_batch": median,
        "images_per_sec": batch / median, "gflops_per_sec": achieved / 1e9,
        "fraction_of_float32_peak": achieved / peak,
        "speed_vs_float32": reference / median,
        "max_abs_diff_vs_float32": float(tf.reduce_max(tf.abs(
            outputs[name] - outputs["float32"])))})
  sweep = batch_sweep(purifiers["float32"], size, matmul, matmul_flops, flops_per_image)
  results = {"gflops_per_image": flops_per_image / 1e9,
             "matmul_float32_peak_gflops_per_sec": peak / 1e9,
             "matmul_bfloat16_gflops_per_sec": peak_bf16 / 1e9,
             "options": rows, "seconds": seconds, "batch_sweep": sweep}

  print(f"\nCD-GAN chain {size} -> {size // scale} -> {size}, {FLAGS.num_res_blocks} blocks x "
        f"{FLAGS.filters} filters, batch {batch}: {flops_per_image / 1e9:.2f} GFLOP/image "
        f"(CPU threads: {os.cpu_count()})")
  print(f"float32 matmul {FLAGS.matmul_size}^2: {peak / 1e9:.1f} GFLOP/s (peak); bfloat16 "
        f"matmul: {peak_bf16 / 1e9:.1f} GFLOP/s")
  print(f"{'option':10} {'images/s':>9} {'GFLOP/s':>9} {'of peak':>8} {'vs fp32':>8} "
        f"{'max diff':>9}")
  for row in rows:
    print(f"{row['option']:10} {row['images_per_sec']:9.2f} {row['gflops_per_sec']:9.1f} "
          f"{100 * row['fraction_of_float32_peak']:7.1f}% {row['speed_vs_float32']:8.2f} "
          f"{row['max_abs_diff_vs_float32']:9.2e}")
  for row in sweep:
    print(f"batch {row['batch_size']:3d}: {row['images_per_sec']:7.2f} images/s "
          f"({100 * row['fraction_of_float32_peak']:.0f} % of the peak)")
  benchlib.write_results(FLAGS.output_json, "purifier_inference", benchlib.flag_values(
      FLAGS, ["image_size", "scale", "batch_size", "num_res_blocks", "filters", "options",
              "repeats", "matmul_size", "batch_sizes", "sweep_images"]), results)


def batch_sweep(purifier, size: int, matmul, matmul_flops: int, flops_per_image: int):
  """Images/s of the float32 chain on --sweep_images images cut into batches of each
  --batch_sizes size, in interleaved rounds with the matmul; [] without --batch_sizes."""
  if not FLAGS.batch_sizes:
    return []
  sizes = [int(b) for b in FLAGS.batch_sizes]
  count = FLAGS.sweep_images
  images = tf.random.stateless_uniform((count, size, size, 3), seed=[2, 3])
  function = tf.function(purifier.__call__, reduce_retracing=True)

  def run(batch):
    chunks = [images[i:i + batch] for i in range(0, count, batch)]
    return lambda: [function(chunk).numpy() for chunk in chunks]

  runs = {"matmul_float32": matmul}
  runs.update({f"batch_{b}": run(b) for b in sizes})
  seconds = benchlib.interleaved_seconds(runs, FLAGS.repeats)
  peak = matmul_flops / seconds["matmul_float32"]["median"]
  return [{"batch_size": b, "images_per_sec": count / seconds[f"batch_{b}"]["median"],
           "fraction_of_float32_peak":
               flops_per_image * count / seconds[f"batch_{b}"]["median"] / peak,
           "matmul_float32_peak_gflops_per_sec": peak / 1e9} for b in sizes]


if __name__ == "__main__":
  cli.run(main)
