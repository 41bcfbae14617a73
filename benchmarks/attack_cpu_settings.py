r"""The attack loop's CPU settings: thread pools, two processes, bfloat16; measured.

Threads: each setting runs in its own process (TensorFlow fixes its pools at start;
set through TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS, 0 = TensorFlow's default):
a child loads the MobileNet-v1 0.75 surrogate's rebuild (the transfer set's new path),
warms up, and times `--steps`-step MI-FGSM batches of `--batch_size` real-size
(224x224) images; the children run one after another, settings interleaved over
`--rounds` rounds, and report wall seconds, CPU seconds / wall (cores busy) and
images/s. "2 processes x intra 1" runs two children at once on half the batch each
(data parallel over the two cores; images/s = both halves over the slower one).
"onednn*" set TF_ENABLE_ONEDNN_OPTS=1 (oneDNN's kernels; TensorFlow leaves them off on
CPUs without AVX512-VNNI / BF16 / AMX; numerics change by float rounding).

bfloat16: (a) TensorFlow's oneDNN bfloat16 rewrite (`auto_mixed_precision_onednn_
bfloat16`) on one gradient step of the same rebuild: whether the gradient changes at
all (it does not where the CPU has no bfloat16 support: the rewrite is skipped), and
its time; (b) a MobileNet block (depthwise 3x3 + pointwise 1x1 + RELU6, 56x56x128,
batch 8) forward and forward + input gradient in float32 and bfloat16, interleaved.
`lscpu`'s bfloat16 flags are recorded. Nice it; only ratios within one run count.

  nice -n 10 python benchmarks/attack_cpu_settings.py [--rounds=2 --steps=5 \
      --batch_size=8 --output_json=results/bench/attack_cpu_settings.json]
"""

from cdgan_tf import cli  # First: keeps TensorFlow's logs quiet unless --verbose.
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

import json  # pylint: disable=g-bad-import-order
import os
import subprocess
import sys
import time

from absl import flags
import numpy as np

import benchlib

_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
_MODELS = os.path.join(os.environ.get("CDGAN_SHARED_DIR", _SHARED), "models", "tflite")
# name: (TF_NUM_INTRAOP_THREADS, TF_NUM_INTEROP_THREADS, TF_ENABLE_ONEDNN_OPTS or None:
# unset, TensorFlow's default: off on CPUs without AVX512-VNNI / BF16 / AMX, as here).
SETTINGS = {"default": (0, 0, None), "intra1_inter1": (1, 1, None),
            "intra2_inter1": (2, 1, None), "intra1_inter2": (1, 2, None),
            "intra2_inter2": (2, 2, None), "onednn": (0, 0, "1"),
            "onednn_intra2_inter1": (2, 1, "1")}
PAIR = "two_processes_intra1"
flags.DEFINE_string("surrogate", os.path.join(_MODELS, "mobilenet_v1_0.75_192_quant.tflite"),
                    "The .tflite surrogate.")
flags.DEFINE_integer("batch_size", 8, "Images per attack call.", lower_bound=2)
flags.DEFINE_integer("steps", 5, "MI-FGSM steps per call.", lower_bound=1)
flags.DEFINE_integer("calls", 3, "Timed calls per child.", lower_bound=1)
flags.DEFINE_integer("rounds", 2, "Interleaved rounds over the settings.", lower_bound=1)
flags.DEFINE_list("settings", list(SETTINGS) + [PAIR], "Thread settings to run: "
                  f"{', '.join(SETTINGS)}, {PAIR}; 'default' always runs.")
flags.DEFINE_bool("bfloat16", True, "Also measure the bfloat16 rows.")
flags.DEFINE_string("child", "", "Internal: 'batch' of a child process.")
flags.DEFINE_string("output_json", "", "Write the figures to this JSON file.")
FLAGS = flags.FLAGS


def _cpu_seconds() -> float:
  times = os.times()
  return times.user + times.system


def child(batch: int) -> dict:
  """Runs in a fresh process: times MI-FGSM calls under the thread pools and oneDNN
  setting the parent put in the environment (TensorFlow reads it at start)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cdgan_tf.attacks import gradient  # pylint: disable=g-import-not-at-top
  from cdgan_tf.attacks import transfer_set  # pylint: disable=g-import-not-at-top
  member = transfer_set.load_surrogates([FLAGS.surrogate])[0]
  fn = transfer_set.attack_functions([member])[0]
  images = tf.random.stateless_uniform([batch, 224, 224, 3], [3, 4])
  labels = np.zeros([batch], np.int64)
  run = lambda: gradient.mifgsm(fn, images, labels, 16 / 255, steps=FLAGS.steps).numpy()
  run()
  walls, cpus = [], []
  for _ in range(FLAGS.calls):
    started, cpu = time.perf_counter(), _cpu_seconds()
    run()
    walls.append(time.perf_counter() - started)
    cpus.append(_cpu_seconds() - cpu)
  return {"seconds_median": float(np.median(walls)),
          "cpu_over_wall": float(np.sum(cpus) / np.sum(walls)),
          "TF_NUM_INTRAOP_THREADS": os.environ.get("TF_NUM_INTRAOP_THREADS"),
          "TF_NUM_INTEROP_THREADS": os.environ.get("TF_NUM_INTEROP_THREADS"),
          "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}


def _spawn(setting, batch: int) -> subprocess.Popen:
  intra, inter, onednn = setting
  env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(intra),
             TF_NUM_INTEROP_THREADS=str(inter))
  env.pop("TF_ENABLE_ONEDNN_OPTS", None)
  if onednn is not None:
    env["TF_ENABLE_ONEDNN_OPTS"] = onednn
  return subprocess.Popen(
      [sys.executable, os.path.abspath(__file__), f"--child={batch}",
       f"--surrogate={FLAGS.surrogate}", f"--steps={FLAGS.steps}",
       f"--calls={FLAGS.calls}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
      text=True, env=env)


def _result(process: subprocess.Popen) -> dict:
  out, _ = process.communicate()
  if process.returncode:
    raise RuntimeError(f"child failed (exit {process.returncode})")
  return json.loads(out.strip().splitlines()[-1])


def thread_rows() -> dict:
  """{setting: {"images_per_sec", "seconds_median", "cpu_over_wall"}} (medians over
  rounds), the settings run one after another in each round."""
  chosen = ["default"] + [s for s in FLAGS.settings if s != "default"]
  results = {name: [] for name in chosen}
  half = FLAGS.batch_size // 2
  for _ in range(FLAGS.rounds):
    for name in chosen:
      if name == PAIR:
        pair = [_result(p) for p in [_spawn(SETTINGS["intra1_inter1"], half),
                                     _spawn(SETTINGS["intra1_inter1"],
                                            FLAGS.batch_size - half)]]
        results[name].append({"seconds_median": max(r["seconds_median"] for r in pair),
                              "cpu_over_wall": sum(r["cpu_over_wall"] for r in pair)})
      else:
        results[name].append(_result(_spawn(SETTINGS[name], FLAGS.batch_size)))
      print(name, results[name][-1], flush=True)
  rows = {}
  for name, runs in results.items():
    seconds = float(np.median([r["seconds_median"] for r in runs]))
    rows[name] = {"seconds_median": seconds, "images_per_sec": FLAGS.batch_size / seconds,
                  "cpu_over_wall": float(np.median([r["cpu_over_wall"] for r in runs]))}
  base = rows["default"]["seconds_median"]
  for row in rows.values():
    row["speedup_over_default"] = base / row["seconds_median"]
  return rows


def bfloat16_rows() -> dict:
  """The oneDNN bfloat16 rewrite on the attack's gradient step; a MobileNet block in
  float32 and bfloat16."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cdgan_tf.attacks import transfer_set  # pylint: disable=g-import-not-at-top
  member = transfer_set.load_surrogates([FLAGS.surrogate])[0]
  fn = transfer_set.attack_functions([member])[0]
  x = tf.random.stateless_uniform([FLAGS.batch_size, 224, 224, 3], [1, 2])

  def step(images):
    with tf.GradientTape() as tape:
      tape.watch(images)
      loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=tf.zeros([FLAGS.batch_size], tf.int64), logits=fn(images)))
    return tape.gradient(loss, images)

  plain = tf.function(step)
  reference = plain(x).numpy()
  option = "auto_mixed_precision_onednn_bfloat16"
  tf.config.optimizer.set_experimental_options({option: True})
  try:
    rewritten = tf.function(lambda images: step(images))
    changed = rewritten(x).numpy()
  finally:
    tf.config.optimizer.set_experimental_options({option: False})
  step_seconds = benchlib.interleaved_seconds(
      {"float32": lambda: plain(x).numpy(), "onednn_bfloat16": lambda: rewritten(x).numpy()},
      FLAGS.rounds + 1)
  block = {}
  inputs = tf.random.stateless_uniform([8, 56, 56, 128], [5, 6])
  depthwise = tf.random.stateless_uniform([3, 3, 128, 1], [7, 8], -0.3, 0.3)
  pointwise = tf.random.stateless_uniform([1, 1, 128, 128], [9, 10], -0.1, 0.1)
  runs = {}
  for dtype in (tf.float32, tf.bfloat16):
    xs, dw, pw = (tf.cast(v, dtype) for v in (inputs, depthwise, pointwise))

    def forward(xs=xs, dw=dw, pw=pw):
      return tf.nn.relu6(tf.nn.conv2d(tf.nn.depthwise_conv2d(
          xs, dw, [1, 1, 1, 1], "SAME"), pw, 1, "SAME"))

    def gradient_fn(xs=xs, forward=forward):
      with tf.GradientTape() as tape:
        tape.watch(xs)
        loss = tf.reduce_sum(tf.cast(forward(xs), tf.float32))
      return tape.gradient(loss, xs)

    f, g = tf.function(forward), tf.function(gradient_fn)
    runs[f"forward_{dtype.name}"] = lambda f=f: f().numpy()
    runs[f"gradient_{dtype.name}"] = lambda g=g: g().numpy()
  seconds = benchlib.interleaved_seconds(runs, FLAGS.rounds + 2)
  for kind in ("forward", "gradient"):
    block[kind] = {"float32_seconds": seconds[f"{kind}_float32"]["median"],
                   "bfloat16_seconds": seconds[f"{kind}_bfloat16"]["median"]}
    block[kind]["bfloat16_over_float32"] = (block[kind]["bfloat16_seconds"] /
                                            block[kind]["float32_seconds"])
  flags_line = ""
  try:
    flags_line = subprocess.run(["lscpu"], capture_output=True, text=True,
                                check=False).stdout
  except OSError:
    pass
  cpu_flags = next((line.split(":", 1)[1].split() for line in flags_line.splitlines()
                    if line.startswith("Flags:")), [])
  return {"cpu_bfloat16_flags": [f for f in cpu_flags if "bf16" in f or "amx" in f],
          "cpu_avx512": any(f.startswith("avx512") for f in cpu_flags),
          "onednn_rewrite": {
              "gradient_max_abs_change": float(np.abs(changed - reference).max()),
              "seconds": step_seconds,
              "rewritten_over_float32": (step_seconds["onednn_bfloat16"]["median"] /
                                         step_seconds["float32"]["median"])},
          "mobilenet_block_56x56x128_batch8": block}


def main(argv):
  del argv
  if FLAGS.child:
    print(json.dumps(child(int(FLAGS.child))), flush=True)
    return
  unknown = [s for s in FLAGS.settings if s not in SETTINGS and s != PAIR]
  if unknown:
    raise cli.UsageError(f"--settings: {', '.join(unknown)} (choose from "
                         f"{', '.join(list(SETTINGS) + [PAIR])})")
  if not os.path.exists(FLAGS.surrogate):
    raise cli.UsageError(f"--surrogate: {FLAGS.surrogate} does not exist")
  results = {"threads": thread_rows()}
  if FLAGS.bfloat16:
    results["bfloat16"] = bfloat16_rows()
  print(json.dumps(results, indent=1))
  benchlib.write_results(FLAGS.output_json, "attack_cpu_settings", benchlib.flag_values(
      FLAGS, ["surrogate", "batch_size", "steps", "calls", "rounds", "settings",
              "bfloat16"]), results)


if __name__ == "__main__":
  cli.run(main)
