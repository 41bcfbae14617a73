"""What the benchmark scripts share: FLOP counts, the machine's matmul peak, timing in
interleaved rounds, and the JSON file every benchmark writes.

No absl flags live here, so any benchmark can import it (and each other's helpers)
without defining a flag twice.

Timing on a shared machine: other jobs take CPU time away at random, so absolute
figures drift between runs. Every benchmark therefore measures what it compares in the
SAME run, in rounds in which the candidates take turns (`interleaved_seconds`), and
reports medians and ratios; only the ratios are meant to be compared across runs.
"""

from __future__ import annotations

import collections
import datetime
import os
import platform
import statistics
import time
from typing import Callable, Dict, Sequence

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants
from tensorflow.python.profiler import model_analyzer
from tensorflow.python.profiler import option_builder

from cdgan_tf.common import files
from cdgan_tf.training import losses


def function_flops(fn: Callable[[tf.Tensor], object], input_shape: Sequence[int]) -> int:
  """FLOPs of one call of `fn` on a float32 tensor of `input_shape`, by the TF profiler.

  The function is traced, its variables are frozen into constants and the profiler's
  `float_operation()` view counts the graph's ops (a multiply-add = 2 FLOPs; only ops
  with a registered FLOP statistic count: Conv2D, MatMul, BiasAdd, element-wise math;
  data movement such as depth_to_space counts 0).

  Args:
    fn: float32 tensor -> tensor(s); Keras models, purifiers, any TF callable.
    input_shape: The static input shape, e.g. [1, 256, 256, 3].

  Returns:
    The total float operations of one call.
  """
  concrete = tf.function(fn).get_concrete_function(
      tf.TensorSpec(list(input_shape), tf.float32))
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


def _frozen_graph_def(fn, input_shape):
  concrete = tf.function(fn).get_concrete_function(
      tf.TensorSpec(list(input_shape), tf.float32))
  frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
  return frozen.graph.as_graph_def(), frozen.inputs[0].name, frozen.outputs[0].name


def _gan_step_gradients(step, batch):
  """inputs -> the generator's and discriminator's weight gradients of one adversarial
  step on `batch` (targets captured), as `GanStep._replica_step` computes them, with
  batch normalization in inference mode (see `gan_step_flops`)."""
  target = batch[1]
  config = step.experiment.loss
  feature_fn = step._feature_extractor  # pylint: disable=protected-access

  def gradients(inputs):
    with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
      generated = step.generator(step.generator_input(inputs), training=False)
      fake_logits = step.discriminator(generated, training=False)
      g_loss = tf.reduce_mean(losses.generator_loss(
          target, generated, fake_logits, config, feature_extractor=feature_fn)["total"])
      real_logits = step.discriminator(target, training=False)
      d_loss = tf.reduce_mean(losses.discriminator_loss(real_logits, fake_logits,
                                                        config.adversarial_loss))
    return (g_tape.gradient(g_loss, step.generator.trainable_variables) +
            d_tape.gradient(d_loss, step.discriminator.trainable_variables))

  return gradients


def gan_step_flops(step, batch) -> int:
  """Profiler FLOPs of one adversarial train step on `batch` (`benchlib.function_flops`):
  the generator and discriminator forward passes, the losses (with the feature network
  when configured) and both gradients, as `GanStep._replica_step` computes them, but
  with batch normalization in inference mode (the moving-average updates cannot be
  frozen into a graph; batch statistics are a few FLOPs per activation against a conv's
  hundreds). The Adam updates (about 10 FLOPs per weight) are not counted."""
  return function_flops(_gan_step_gradients(step, batch), batch[0].shape.as_list())


def gan_step_profile(step, batch, top: int = 10) -> list:
  """`op_time_profile` of the computation `gan_step_flops` counts (both forward passes,
  losses, both weight gradients; no Adam update, batch norm in inference mode)."""
  gradients = _gan_step_gradients(step, batch)
  total = lambda x: tf.add_n([tf.reduce_sum(g) for g in gradients(x)])  # noqa: E731
  return op_time_profile(total, batch[0].shape.as_list(), top=top, runs=1)


def op_time_profile(fn: Callable[[tf.Tensor], tf.Tensor], input_shape: Sequence[int],
                    top: int = 10, runs: int = 3) -> list:
  """The ops that take the time in one call of `fn`, from TensorFlow's step trace.

  `fn` is traced and frozen as in `function_flops`, run in a graph session (with
  grappler's rewrites, e.g. oneDNN fusions, as a tf.function gets them) on uniform
  [0, 1) inputs, and the kernel times of a fully traced run are summed per op type
  (the fastest of `runs` traced runs, after an untimed one).

  Returns:
    [{"op": type, "count": kernels run, "ms": summed kernel time, "share": of the
    total}], the `top` slowest types first.
  """
  graph_def, inp, out = _frozen_graph_def(fn, input_shape)
  rng = tf.random.stateless_uniform(list(input_shape), [5, 6]).numpy()
  best = None
  with tf.Graph().as_default() as graph:
    tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
      session.run(out, {inp: rng})
      for _ in range(runs):
        meta = tf.compat.v1.RunMetadata()
        session.run(out, {inp: rng}, options=tf.compat.v1.RunOptions(
            trace_level=tf.compat.v1.RunOptions.FULL_TRACE), run_metadata=meta)
        times, counts = collections.Counter(), collections.Counter()
        for device in meta.step_stats.dev_stats:
          for node in device.node_stats:
            label = node.timeline_label
            op = (label.split(" = ")[1].split("(")[0] if " = " in label
                  else node.node_name)
            times[op] += node.all_end_rel_micros
            counts[op] += 1
        if best is None or sum(times.values()) < sum(best[0].values()):
          best = (times, counts)
  times, counts = best
  total = max(sum(times.values()), 1)
  return [{"op": op, "count": counts[op], "ms": micros / 1e3, "share": micros / total}
          for op, micros in times.most_common(top)]


def print_profile(title: str, rows: list) -> None:
  """Prints `op_time_profile` rows as a table."""
  print(f"{title}: top ops by kernel time")
  for row in rows:
    print(f"  {row['op']:46} {row['count']:4d} x {row['ms']:8.2f} ms "
          f"{100 * row['share']:5.1f} %")


def profiler_flops(model, input_side: int) -> int:
  """FLOPs of one forward pass of a Keras model on [1, input_side, input_side, 3]."""
  return function_flops(lambda x: model(x, training=False), [1, input_side, input_side, 3])


def matmul_runner(size: int = 2048, dtype: tf.DType = tf.float32):
  """A compiled square matmul and its FLOPs per call (2 * size^3).

  Returns:
    (run, flops): run() computes one [size, size] x [size, size] product and waits for
    it; the machine's practical peak is flops / (seconds per run()).
  """
  a = tf.cast(tf.random.stateless_normal([size, size], seed=[1, 2]), dtype)
  b = tf.cast(tf.random.stateless_normal([size, size], seed=[3, 4]), dtype)
  product = tf.function(tf.matmul)
  product(a, b)  # Trace.
  # The whole product is computed (no op of the function can be pruned); reading one
  # element waits for it.
  return (lambda: product(a, b)[0, 0].numpy()), 2 * size ** 3


def interleaved_seconds(runs: Dict[str, Callable[[], object]], repeats: int,
                        warmup: int = 1) -> Dict[str, Dict[str, float]]:
  """Times each run() in `repeats` rounds in which the runs take turns.

  Args:
    runs: name -> a callable that does one unit of work and waits for its result.
    repeats: Timed rounds.
    warmup: Untimed calls of each run before the first round (tracing, caches).

  Returns:
    name -> {"median": s, "min": s, "mean": s} seconds per call. A load change on the
    machine hits every run of a round alike, so ratios of medians are stable.
  """
  for run in runs.values():
    for _ in range(warmup):
      run()
  times = {name: [] for name in runs}
  for _ in range(repeats):
    for name, run in runs.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  return {name: {"median": statistics.median(t), "min": min(t), "mean": statistics.mean(t)}
          for name, t in times.items()}


def environment() -> dict:
  """What the figures were measured on (they are only comparable within one run)."""
  try:
    load = list(os.getloadavg())
  except OSError:
    load = None
  return {"time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
              timespec="seconds"),
          "tensorflow": tf.__version__, "python": platform.python_version(),
          "machine": platform.machine(), "cpu_count": os.cpu_count(),
          "load_average_1_5_15": load,
          "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}


def write_results(path: str, benchmark: str, settings: dict, results) -> str:
  """Writes {"benchmark", "settings", "environment", "results"} as JSON, atomically.

  Args:
    path: Destination file ("" writes nothing); its folder is created.
    benchmark: The script's name (e.g. "train_throughput").
    settings: The flag values the figures depend on.
    results: JSON-ready figures.

  Returns:
    The path written, or "".
  """
  if not path:
    return ""
  folder = os.path.dirname(os.path.abspath(path))
  tf.io.gfile.makedirs(folder)
  files.write_json(path, {"benchmark": benchmark, "settings": settings,
                          "environment": environment(), "results": results})
  print(f"wrote {path}")
  return path


# The size flags every training benchmark defines, named as config.from_flat takes them.
SIZE_FLAGS = ("image_size", "scale", "batch_size", "num_res_blocks", "filters",
              "discriminator_filters")


def flag_values(flag_values_obj, names: Sequence[str]) -> dict:
  """{name: value} of the named absl flags (the settings block of the JSON)."""
  return {name: flag_values_obj[name].value for name in names}
