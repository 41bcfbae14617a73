r"""Pair generation: images/s and GFLOP/s of the attack recipes, old path next to new.

The transfer-set generator (`cdgan_tf.attacks.transfer_set`) spends its time in the
attack's gradient steps through a `.tflite` surrogate's float rebuild. For each recipe
this times, on the same batch of real ImageNet images (prepared as the generator does,
224x224 "damagenet" crop) and in interleaved rounds with a float32 matmul (the
machine's practical peak, as in purifier_inference.py):

  old   the path before issue 22: the TFLite classifier as the attack's logits_fn (the
        interpreter's forward in every step, gradients from a rebuild whose RELU6 and
        uint8 clamp are separate ops: `TFLiteRebuild(merge_clamps=False)`)
  new   `transfer_set.attack_functions(...)`: the rebuild alone, RELU6 and clamp merged

Recipes (`--recipes`):
  mifgsm10, mifgsm40   MI-FGSM 16/255, 10 / 40 steps (the DAmageNet-style recipe)
  fgsm                 FGSM 16/255
  feature10            label-free feature attack: 10 signed steps (16/255 L-inf ball)
                       ascending ||f(x') - f(x)||^2 of the MobileNet-v1 1.0 embedding
                       extractor. No feature-attack module is on main yet (issue 18's
                       `mix` helper writes one); this is a minimal equivalent built on
                       `gradient.pgd`'s loop shape, timed here only.

GFLOP/s = (profiler FLOPs of one forward + input-gradient step of the rebuild, per
image: `benchlib.function_flops`) x steps x images / median seconds; the same count for
old and new (the interpreter's forward in the old path is extra work, not counted).
`speedup` = old median / new median, same run. XLA (`jit_compile=True`) is measured on
one gradient step both ways (`xla_step`). With --transfer_images=N the 40-step recipe
runs old and new on the same N images and reports the transfer rate to a target
(MobileNet-v2 interpreter): the share of the images the target gets right clean that it
gets wrong after the attack. --profile prints (and stores) the top ops by time of one
step of each path. Nice it on a shared machine; only ratios are meant to be compared.

  nice -n 5 python benchmarks/pair_generation.py [--batch_size=8 --repeats=3 \
      --recipes=mifgsm10,mifgsm40,fgsm,feature10 --transfer_images=200 --profile \
      --output_json=results/bench/pair_generation.json]
"""

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

import os  # pylint: disable=g-bad-import-order
import shutil
import tempfile
import time

from absl import flags
import numpy as np
import tensorflow as tf

import benchlib
from cdgan_tf import classifiers
from cdgan_tf.attacks import gradient
from cdgan_tf.attacks import transfer_set
from cdgan_tf.classifiers import tflite_rebuild
from cdgan_tf.data import folders
from cdgan_tf.data import image_files

_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
_MODELS = os.path.join(os.environ.get("CDGAN_SHARED_DIR", _SHARED), "models", "tflite")
_VAL = os.path.join(os.environ.get("CDGAN_SHARED_DIR", _SHARED), "datasets",
                    "imagenet_val_sample")
RECIPES = {"mifgsm10": ("mifgsm", 10), "mifgsm40": ("mifgsm", 40), "fgsm": ("fgsm", 1),
           "feature10": ("feature", 10)}
EPS = 16.0 / 255.0
flags.DEFINE_string("surrogate", os.path.join(_MODELS, "mobilenet_v1_0.75_192_quant.tflite"),
                    "The .tflite surrogate of the label attacks.")
flags.DEFINE_string("feature_model", os.path.join(
    _MODELS, "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"),
                    "The .tflite embedding extractor of the feature attack.")
flags.DEFINE_string("target", os.path.join(_MODELS, "mobilenet_v2_1.0_224_quant.tflite"),
                    "Target classifier of the transfer rate (--transfer_images).")
flags.DEFINE_string("clean_dir", _VAL, "Clean images (flat folder).")
flags.DEFINE_string("labels", os.path.join(_VAL, "val.txt"), "Label file of --clean_dir.")
flags.DEFINE_list("recipes", list(RECIPES), f"Recipes, from {', '.join(RECIPES)}.")
flags.DEFINE_integer("batch_size", 8, "Images per attack call.", lower_bound=1)
flags.DEFINE_integer("repeats", 3, "Timed rounds (medians reported).", lower_bound=1)
flags.DEFINE_integer("matmul_size", 2048, "Side of the peak-measuring matmul.",
                     lower_bound=64)
flags.DEFINE_integer("transfer_images", 0, "Images of the old-vs-new transfer-rate "
                     "check (40-step MI-FGSM); 0: none.", lower_bound=0)
flags.DEFINE_integer("pipeline_images", 0, "Images of the whole-generator row (decode, "
                     "attack, predictions, PNG + sidecar writes through transfer_set."
                     "generate): old path, new path, new path with overlap; 0: none.",
                     lower_bound=0)
flags.DEFINE_enum("pipeline_recipe", "mifgsm10", ["mifgsm10", "mifgsm40", "fgsm"],
                  "Recipe of the whole-generator row.")
flags.DEFINE_integer("pipeline_repeats", 2, "Timed rounds of the whole-generator row.",
                     lower_bound=1)
flags.DEFINE_bool("profile", False, "Print the top ops by time of one step of each path.")
flags.DEFINE_string("output_json", "", "Write the figures to this JSON file.")
FLAGS = flags.FLAGS


def load_images(count: int, offset: int = 0):
  """uint8 [count, 224, 224, 3] prepared ("damagenet" crop) and int64 labels, the
  first `count` keys after `offset` of the fixed subset order, and decode + prepare +
  PNG-encode seconds per image (the generator's work outside the attack)."""
  listed, _ = folders.list_labelled_images(FLAGS.clean_dir, FLAGS.labels)
  by_key = {key: (path, label) for key, path, label in listed}
  keys = folders.select_subset(sorted(by_key), offset + count)[offset:offset + count]
  started = time.perf_counter()
  pixels = [image_files.prepare_clean(image_files.load_rgb(by_key[k][0]), "damagenet")
            for k in keys]
  for image in pixels:
    tf.io.encode_png(image).numpy()
  io_seconds = (time.perf_counter() - started) / max(len(keys), 1)
  return (np.stack(pixels), np.array([by_key[k][1] for k in keys], np.int64),
          io_seconds)


def feature_attack(feature_fn, images, steps: int, eps: float = EPS):
  """Minimal label-free feature attack: signed steps of eps / steps * 2.5 ascending
  ||f(x') - f(x)||^2 (random start in the ball), projected onto the eps L-inf ball."""
  return _feature_loop(feature_fn)(images, tf.constant(eps), tf.constant(steps))


_FEATURE_LOOPS = {}


def _feature_loop(feature_fn):
  if id(feature_fn) not in _FEATURE_LOOPS:
    @tf.function(reduce_retracing=True)
    def run(x, eps, steps):
      clean = tf.stop_gradient(feature_fn(x))
      alpha = 2.5 * eps / tf.cast(steps, tf.float32)
      adv = tf.clip_by_value(x + tf.random.stateless_uniform(tf.shape(x), [7, 8], -eps, eps),
                             0.0, 1.0)
      for _ in tf.range(steps):
        with tf.GradientTape() as tape:
          tape.watch(adv)
          loss = tf.reduce_sum(tf.square(feature_fn(adv) - clean))
        adv = adv + alpha * tf.sign(tape.gradient(loss, adv))
        adv = tf.clip_by_value(tf.clip_by_value(adv, x - eps, x + eps), 0.0, 1.0)
      return adv
    _FEATURE_LOOPS[id(feature_fn)] = (feature_fn, run)
  return _FEATURE_LOOPS[id(feature_fn)][1]


def _label_step(fn):
  """One forward + input gradient of the cross-entropy (label 0), for FLOPs / profile."""
  def step(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=tf.zeros([tf.shape(x)[0]], tf.int64), logits=fn(x)))
    return tape.gradient(loss, x)
  return step


def _feature_step(fn):
  def step(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(tf.square(fn(x) - 0.5))
    return tape.gradient(loss, x)
  return step


def build_paths():
  """{"old"|"new": (label logits_fn, feature fn)} and the steps' FLOP counts per image."""
  surrogate_new = transfer_set.load_surrogates([FLAGS.surrogate])
  surrogate_old = classifiers.load_classifier(FLAGS.surrogate)
  surrogate_old.rebuild = tflite_rebuild.TFLiteRebuild(FLAGS.surrogate, merge_clamps=False)
  features = {name: tflite_rebuild.TFLiteRebuild(FLAGS.feature_model, merge_clamps=merge)
              for name, merge in (("old", False), ("new", True))}
  paths = {"old": (surrogate_old, features["old"]),
           "new": (transfer_set.attack_functions(surrogate_new)[0], features["new"])}
  label_flops = benchlib.function_flops(_label_step(paths["new"][0]),
                                        [1, 224, 224, 3])
  feature_flops = benchlib.function_flops(_feature_step(features["new"]), [1, 224, 224, 3])
  return (paths, {"label": label_flops, "feature": feature_flops}, surrogate_new[0].rebuild,
          {"old": surrogate_old, "new": surrogate_new[0]})


def recipe_run(recipe: str, path, images, labels):
  kind, steps = RECIPES[recipe]
  logits_fn, feature_fn = path
  if kind == "mifgsm":
    return lambda: gradient.mifgsm(logits_fn, images, labels, EPS, steps=steps).numpy()
  if kind == "fgsm":
    return lambda: gradient.fgsm(logits_fn, images, labels, EPS).numpy()
  return lambda: feature_attack(feature_fn, images, steps).numpy()


def xla_step(rebuild, images):
  """Seconds of one label gradient step of the (new) rebuild without and with XLA, same
  run, on images at its input size (XLA has no kernel for the antialiased resize)."""
  images = tf.image.resize(images, rebuild.input_size)
  step = _label_step(rebuild)
  runs = {"no_xla": tf.function(step), "xla": tf.function(step, jit_compile=True)}
  return benchlib.interleaved_seconds(
      {k: (lambda f=f: f(images).numpy()) for k, f in runs.items()}, FLAGS.repeats)


def _cpu_seconds() -> float:
  times = os.times()
  return times.user + times.system


def pipeline_row(surrogates, count: int, recipe: str) -> dict:
  """The whole generator (`transfer_set.generate`) on the first `count` images of the
  fixed subset, "damagenet" crop: old (interpreter path, no overlap), new (rebuild, no
  overlap) and overlap (rebuild, decode ahead / write behind), in interleaved rounds
  into fresh folders; CPU seconds over wall seconds per variant; same bytes checked."""
  kind, steps = RECIPES[recipe]
  variants = {"old": (surrogates["old"], "interpreter", 0),
              "new": (surrogates["new"], "rebuild", 0),
              "overlap": (surrogates["new"], "rebuild", 2)}
  root = tempfile.mkdtemp(prefix="pair_generation_")

  def run(name, images, folder):
    surrogate, attack_path, depth = variants[name]
    shutil.rmtree(folder, ignore_errors=True)
    return transfer_set.generate(
        FLAGS.clean_dir, folder, [surrogate], labels_path=FLAGS.labels, attack=kind,
        eps=EPS, steps=steps, crop="damagenet", batch_size=FLAGS.batch_size,
        max_images=images, seed=0, log_every=10 ** 9, attack_path=attack_path,
        overlap_depth=depth)

  try:
    for name in variants:  # Tracing, first file opens: one batch each, untimed.
      run(name, FLAGS.batch_size, os.path.join(root, "warmup"))
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    for _ in range(FLAGS.pipeline_repeats):
      for name in variants:
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        run(name, count, os.path.join(root, name))
        wall[name].append(time.perf_counter() - started)
        cpu[name].append(_cpu_seconds() - cpu_started)
    same = {name: _folder_bytes(os.path.join(root, name)) for name in variants}
  finally:
    shutil.rmtree(root, ignore_errors=True)
  row = {"recipe": recipe, "images": count, "batch_size": FLAGS.batch_size,
         "repeats": FLAGS.pipeline_repeats,
         "overlap_same_bytes_as_new": same["overlap"] == same["new"]}
  for name in variants:
    median = float(np.median(wall[name]))
    row[name] = {"images_per_sec": count / median, "seconds_median": median,
                 "cpu_over_wall": float(np.sum(cpu[name]) / np.sum(wall[name]))}
  row["speedup_overlap_over_old"] = row["old"]["seconds_median"] / row["overlap"][
      "seconds_median"]
  row["speedup_overlap_over_new"] = row["new"]["seconds_median"] / row["overlap"][
      "seconds_median"]
  row["speedup_new_over_old"] = row["old"]["seconds_median"] / row["new"]["seconds_median"]
  return row


def _folder_bytes(folder: str) -> dict:
  """{relative path: bytes} of the PNGs and the sidecar under folder."""
  found = {}
  for directory, _, names in os.walk(folder):
    for name in names:
      if name.endswith(".png") or name == ".attack_stats.jsonl":
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
          found[os.path.relpath(path, folder)] = f.read()
  return found


def transfer_rates(paths, count: int) -> dict:
  """Old and new 40-step MI-FGSM on the same `count` images, judged by the target."""
  target = classifiers.load_classifier(FLAGS.target, gradients=False)
  pixels, labels, _ = load_images(count, offset=FLAGS.batch_size)
  result = {"images": int(count), "target": os.path.basename(FLAGS.target)}
  batches = [(tf.constant(pixels[i:i + FLAGS.batch_size].astype(np.float32) / 255.0),
              labels[i:i + FLAGS.batch_size]) for i in range(0, count, FLAGS.batch_size)]
  clean_ok = np.concatenate([target.predict(x).numpy() == y for x, y in batches])
  for name, path in paths.items():
    wrong, seconds = [], 0.0
    for x, y in batches:
      started = time.perf_counter()
      adv = gradient.mifgsm(path[0], x, y, EPS, steps=40).numpy()
      seconds += time.perf_counter() - started
      adv = np.round(adv * 255.0) / 255.0  # As written: 8-bit PNG pixels.
      wrong.append(target.predict(tf.constant(adv, tf.float32)).numpy() != y)
    wrong = np.concatenate(wrong)
    result[name] = {"transfer_rate": float(np.mean(wrong[clean_ok])),
                    "target_top1_adversarial": float(1.0 - np.mean(wrong)),
                    "attack_images_per_sec": count / seconds}
  result["target_top1_clean"] = float(np.mean(clean_ok))
  result["transfer_rate_difference_points"] = 100.0 * (
      result["new"]["transfer_rate"] - result["old"]["transfer_rate"])
  return result


def main(argv):
  del argv
  unknown = [r for r in FLAGS.recipes if r not in RECIPES]
  if unknown:
    raise cli.UsageError(f"--recipes: {', '.join(unknown)} (choose from "
                         f"{', '.join(RECIPES)})")
  for flag in ("surrogate", "feature_model", "clean_dir", "labels"):
    if not os.path.exists(FLAGS[flag].value):
      raise cli.UsageError(f"--{flag}: {FLAGS[flag].value} does not exist")
  paths, flops, rebuild, surrogates = build_paths()
  pixels, labels, io_seconds = load_images(FLAGS.batch_size)
  images = tf.constant(pixels.astype(np.float32) / 255.0)
  matmul, matmul_flops = benchlib.matmul_runner(FLAGS.matmul_size)
  rows, all_seconds, peaks = [], {}, []
  for recipe in FLAGS.recipes:
    runs = {"matmul_float32": matmul}
    runs.update({name: recipe_run(recipe, path, images, labels)
                 for name, path in paths.items()})
    seconds = benchlib.interleaved_seconds(runs, FLAGS.repeats)
    all_seconds[recipe] = seconds
    peak = matmul_flops / seconds["matmul_float32"]["median"]
    peaks.append(peak)
    kind, steps = RECIPES[recipe]
    work = flops["feature" if kind == "feature" else "label"] * steps * FLAGS.batch_size
    row = {"recipe": recipe, "steps": steps, "batch_size": FLAGS.batch_size,
           "matmul_float32_peak_gflops_per_sec": peak / 1e9}
    for name in paths:
      median = seconds[name]["median"]
      row[name] = {"images_per_sec": FLAGS.batch_size / median,
                   "gflops_per_sec": work / median / 1e9,
                   "fraction_of_float32_peak": work / median / peak}
    row["gflops_per_sec"] = row["new"]["gflops_per_sec"]
    row["images_per_sec"] = row["new"]["images_per_sec"]
    row["speedup"] = seconds["old"]["median"] / seconds["new"]["median"]
    rows.append(row)
    print(f"{recipe:10} old {row['old']['images_per_sec']:7.2f} img/s "
          f"{row['old']['gflops_per_sec']:6.1f} GFLOP/s | new "
          f"{row['new']['images_per_sec']:7.2f} img/s {row['new']['gflops_per_sec']:6.1f} "
          f"GFLOP/s ({100 * row['new']['fraction_of_float32_peak']:.0f} % of "
          f"{peak / 1e9:.0f}) | speedup {row['speedup']:.2f}", flush=True)
  xla = xla_step(rebuild, images)
  results = {"gflop_per_image_step": {k: v / 1e9 for k, v in flops.items()},
             "matmul_float32_peak_gflops_per_sec": float(np.median(peaks)) / 1e9,
             "recipes": rows, "seconds": all_seconds,
             "xla_step": {"seconds": xla, "xla_over_no_xla":
                          xla["xla"]["median"] / xla["no_xla"]["median"]},
             "io_seconds_per_image": io_seconds}
  print(f"XLA one step: {xla['no_xla']['median']:.3f} s without, "
        f"{xla['xla']['median']:.3f} s with; decode + prepare + PNG encode "
        f"{1e3 * io_seconds:.1f} ms/image")
  if FLAGS.profile:
    results["profile"] = {}
    for name, path in paths.items():
      fn = path[0].rebuilt_scores if name == "old" else path[0]
      profile = benchlib.op_time_profile(_label_step(fn),
                                         [FLAGS.batch_size, 224, 224, 3])
      benchlib.print_profile(f"{name} step (batch {FLAGS.batch_size})", profile)
      results["profile"][name] = profile
  if FLAGS.pipeline_images:
    row = pipeline_row(surrogates, FLAGS.pipeline_images, FLAGS.pipeline_recipe)
    results["pipeline"] = row
    print(f"generator {row['recipe']} on {row['images']} images: old "
          f"{row['old']['images_per_sec']:.2f}, new {row['new']['images_per_sec']:.2f}, "
          f"overlap {row['overlap']['images_per_sec']:.2f} img/s (overlap / old "
          f"{row['speedup_overlap_over_old']:.2f}x, / new "
          f"{row['speedup_overlap_over_new']:.2f}x; CPU/wall "
          + ", ".join(f"{n} {row[n]['cpu_over_wall']:.2f}" for n in ("old", "new", "overlap"))
          + f"; same bytes: {row['overlap_same_bytes_as_new']})", flush=True)
  if FLAGS.transfer_images:
    results["transfer"] = transfer_rates(paths, FLAGS.transfer_images)
    t = results["transfer"]
    print(f"transfer to {t['target']} on {t['images']} images (target top-1 clean "
          f"{t['target_top1_clean']:.3f}): old {t['old']['transfer_rate']:.4f}, new "
          f"{t['new']['transfer_rate']:.4f} ({t['transfer_rate_difference_points']:+.2f} "
          "points)")
  benchlib.write_results(FLAGS.output_json, "pair_generation", benchlib.flag_values(
      FLAGS, ["surrogate", "feature_model", "target", "recipes", "batch_size", "repeats",
              "matmul_size", "transfer_images", "pipeline_images", "pipeline_recipe",
              "pipeline_repeats", "profile"]), results)


if __name__ == "__main__":
  cli.run(main)
