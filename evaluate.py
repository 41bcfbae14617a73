r"""Evaluates classifiers with and without CD-GAN: the paper's Table 1 and more.

For each classifier it reports top-1 accuracy on:
  normal         clean images, no defense
  attack         adversarial images, no defense
  defense        adversarial images through CD-GAN (and every --defenses entry)
  defense_clean  clean images through CD-GAN (what the defense costs honest users)

Examples:
  # The paper's setting: DAmageNet against ILSVRC2012 val, TF-Hub classifiers.
  python evaluate.py --clean_dir=ILSVRC2012_img_val --adversarial_dir=DAmageNet \
      --labels=val.txt --crop=damagenet --sub_model=runs/sub --super_model=runs/super \
      --classifiers=resnet50_v2,resnet152_v2,inception_v3,mobilenet_v2 \
      --defenses=cdgan,resize,jpeg75,bits4,median3 --output_dir=results/imagenet
  # Clean accuracy only (no adversarial folder, no defense).
  python evaluate.py --clean_dir=imagenet_val_sample --labels=imagenet_val_sample/val.txt \
      --classifiers=model.tflite --output_dir=results/clean
  # White-box and adaptive attacks at eps 8/255.
  python evaluate.py ... --attack=pgd_classifier,pgd_defended,bpda --eps=8/255 --steps=10
  # Deterministic and randomized CD-GAN side by side (noise sigma 0.03 before the chain):
  # PGD / BPDA with EOT over 8 draws, accuracies over 5 draws, black-box query attacks.
  python evaluate.py ... --defenses=cdgan --purifier_noise=0.03 --eot_samples=8 \
      --draws=5 --attack=transfer,square,hopskipjump,pgd_defended,bpda --queries=1000

Writes results.json, results.md, accuracy.png, samples.png and predictions.csv (one
row per image, classifier and condition) into --output_dir; with
--export_dir also the defended SavedModel(s) and the purifier alone.

One evaluation writes a --output_dir at a time (a second one is refused while the first
runs); both folders are probed for writing before any model is loaded. On SIGTERM or
SIGINT the current batch is finished (one inside a query attack, which can take many
minutes, is given up at its next round of queries and not counted), the reports of the
images done so far are written (results.json says `"complete": false`), the lock is
released and no temporary file is left; the exit code is 143 / 130.
"""

import itertools
import os

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

from absl import flags  # pylint: disable=g-bad-import-order
from absl import logging

from cdgan_tf import classifiers as classifiers_lib
from cdgan_tf.common import files
from cdgan_tf.common import interrupts
from cdgan_tf.common import locks
from cdgan_tf.data import image_files
from cdgan_tf.data import streams
from cdgan_tf.defenses import cdgan as cdgan_lib
from cdgan_tf.defenses import randomized
from cdgan_tf.defenses import registry
from cdgan_tf.evaluation import evaluator as evaluator_lib
from cdgan_tf.evaluation import reports
from cdgan_tf.evaluation import samples
from cdgan_tf.models import inference
from cdgan_tf.serving import saving

flags.DEFINE_string("clean_dir", "", "Clean images: flat with --labels, else class folders.")
flags.DEFINE_string("adversarial_dir", "", "Adversarial images paired with --clean_dir by "
                    "file stem (with --labels) or relative path (class folders).")
flags.DEFINE_string("labels", "", "Label file: lines '<file name> <label>' (ImageNet val.txt).")
flags.DEFINE_enum("crop", "none", image_files.CROPS, "Preparation of the clean side: "
                  "'damagenet' = short side 224 + centre crop, as DAmageNet prepared it.")
flags.DEFINE_string("records", "", "TFRecords from tfrecords_builder instead of folders.")
flags.DEFINE_bool("skip_damaged_shards", False, "Leave out "
                  "--records shards that differ from their manifest.json (and say "
                  "how many records were lost) instead of refusing them.")
flags.DEFINE_list("classifiers", [], "Classifiers: registry names (resnet50_v2, "
                  "resnet152_v2, inception_v3, mobilenet_v2; keras:NAME), TF-Hub handles, "
                  "SavedModel dirs, .keras/.h5 or .tflite files.")
flags.DEFINE_float("center_crop", 1.0, "Central fraction of each image the classifiers "
                   "see (ImageNet models are evaluated with "
                   f"{classifiers_lib.IMAGENET_EVAL_CROP_FRACTION} on full-size images).")
flags.DEFINE_string("sub_model", "", "The sub generator of the CD-GAN to evaluate "
                    "(with --super_model): .keras file, export folder or training model_dir.")
flags.DEFINE_string("super_model", "", "Super generator: .keras file or training model_dir.")
flags.DEFINE_string("purifier", "", "An exported purifier SavedModel (instead of the two "
                    "generators).")
flags.DEFINE_integer("purifier_size", None, "Purifier working size (default: as trained; "
                     "without a CD-GAN, the resize baseline's size, default 256).",
                     lower_bound=1)
flags.DEFINE_integer("purifier_scale", None, "The resize baseline's scale when no CD-GAN "
                     "gives it (default 4).", lower_bound=1)
flags.DEFINE_enum("purifier_dtype", "float32", inference.COMPUTE_DTYPES,
                  "Arithmetic of the CD-GAN generators (bfloat16: CPUs with AVX512-BF16, "
                  "TPUs; float16: GPUs). Inputs and outputs stay float32.")
flags.DEFINE_bool("jit_compile", False, "Compile the CD-GAN generators with XLA.")
flags.DEFINE_list("defenses", None, "Defenses to compare: cdgan, sub_only, super_only, "
                  "resize, jpeg<q>, bits<k>, median<k>, identity. Default: cdgan when a "
                  "purifier is given, else none.")
flags.DEFINE_list("attack", ["transfer"], "Attacks: transfer (the given adversarial images),"
                  " pgd_classifier, pgd_defended, bpda, square (Square attack, L-inf "
                  "--eps, scores only), square_l2 (L2 --eps_l2), hopskipjump "
                  "(HopSkipJump, labels only, L2 --eps_l2), hopskipjump_linf (L-inf --eps).")
flags.DEFINE_string("eps", "8/255", "L-inf budget of the gradient attacks (e.g. 8/255).")
flags.DEFINE_integer("steps", 10, "PGD steps.", lower_bound=1)
flags.DEFINE_string("step_size", "", "PGD step size (default 2.5 * eps / steps).")
flags.DEFINE_integer("queries", 1000, "Query budget per image of the query attacks "
                     "(square, square_l2, hopskipjump, hopskipjump_linf), the clean query "
                     "included.", lower_bound=1)
flags.DEFINE_string("eps_l2", "0.5", "L2 budget of square_l2 and hopskipjump on the "
                    "[0, 1] pixel scale.")
flags.DEFINE_float("purifier_noise", 0.0, "Randomized purification: Gaussian noise of this "
                   "sigma on the [0, 1] images before each --randomize defense, drawn anew "
                   "at every call (the copies are named <defense>_rand).", lower_bound=0.0)
flags.DEFINE_bool("purifier_random_resize", False, "Randomized purification: random "
                  "resize-and-pad before each --randomize defense.")
flags.DEFINE_list("randomize", None, "Defenses that also run randomized (default: every "
                  "--defenses entry when --purifier_noise or --purifier_random_resize is "
                  "set).")
flags.DEFINE_integer("eot_samples", 8, "EOT: gradients averaged per PGD step against the "
                     "randomized defenses (pgd_defended, bpda).", lower_bound=1)
flags.DEFINE_integer("draws", 5, "Random draws each accuracy of a randomized defense is "
                     "scored over (mean and spread in results.json).", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Images per evaluation batch.", lower_bound=1)
flags.DEFINE_integer("max_images", 0, "Evaluate a fixed pseudo-random, class-spread subset "
                     "of N images (the same N images as the transfer-set generator's "
                     "--max_images; records: the first N); 0: all.", lower_bound=0)
flags.DEFINE_integer("num_samples", 4, "Images in the sample grid.", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of the attacks' random starts and the randomized "
                     "defenses' draws.")
flags.DEFINE_string("output_dir", "results", "Where the reports are written.")
flags.DEFINE_string("export_dir", "", "Also export the defended SavedModel of each TF "
                    "classifier (<export_dir>/<name>) and the purifier (<export_dir>/purifier).")
flags.DEFINE_bool("overwrite", False, "Replace existing exports.")
flags.DEFINE_integer("max_pixels", image_files.MAX_PIXELS, "Images of more decoded pixels "
                     "are skipped (and listed in results.json) before decoding; also the "
                     "limit of the exported bytes signature. 0: no limit.", lower_bound=0)
flags.register_validator("center_crop", lambda v: 0.0 < v <= 1.0,
                         "--center_crop must be in (0, 1]")
flags.register_multi_flags_validator(
    ["clean_dir", "records"], lambda d: bool(d["clean_dir"]) != bool(d["records"]),
    "give exactly one of --clean_dir (folders) or --records")
FLAGS = flags.FLAGS


def _stream():
  if FLAGS.records:
    return streams.RecordStream(FLAGS.records, FLAGS.batch_size, FLAGS.max_images,
                                skip_damaged_shards=FLAGS.skip_damaged_shards)
  return streams.FolderStream(
      FLAGS.clean_dir, FLAGS.adversarial_dir or None, FLAGS.labels or None, FLAGS.crop,
      FLAGS.batch_size, FLAGS.max_images, max_pixels=FLAGS.max_pixels)


def _threats():
  return [evaluator_lib.ThreatModel.parse(name, FLAGS.eps, FLAGS.steps,
                                          FLAGS.step_size or None, FLAGS.queries,
                                          FLAGS.eps_l2)
          for name in FLAGS.attack]


def _until_stopped(batches, stop: interrupts.StopRequests):
  """The batches until a stop is requested (the batch under way is finished first)."""
  for batch in batches:
    yield batch
    if stop.requested:
      return


def main(argv):
  if os.path.exists(FLAGS.output_dir) and not os.path.isdir(FLAGS.output_dir):
    raise NotADirectoryError(f"--output_dir {FLAGS.output_dir} exists and is not a folder")
  new_folders = [d for d in (FLAGS.output_dir, FLAGS.export_dir) if d and not os.path.exists(d)]
  try:
    files.check_writable(FLAGS.output_dir, "--output_dir")
    if FLAGS.export_dir:
      files.check_writable(FLAGS.export_dir, "--export_dir")
    with locks.FolderLock(FLAGS.output_dir, "evaluate.py"), \
        interrupts.StopRequests() as stop:
      files.remove_stale_temporaries(FLAGS.output_dir)  # A killed evaluation's leftovers.
      _evaluate(argv, stop)
  except BaseException:
    for folder in new_folders:  # A run that fails leaves no empty folder of its own behind.
      files.remove_if_empty(folder)
    raise


def _evaluate(argv, stop: interrupts.StopRequests):
  del argv  # cli.run refuses extra arguments.
  if not FLAGS.classifiers:
    raise cli.UsageError("--classifiers is required (names, handles or model files)")
  if os.path.exists(FLAGS.output_dir) and not os.path.isdir(FLAGS.output_dir):
    raise NotADirectoryError(f"--output_dir {FLAGS.output_dir} exists and is not a folder")
  has_purifier = bool(FLAGS.sub_model or FLAGS.super_model or FLAGS.purifier)
  defense_names = FLAGS.defenses if FLAGS.defenses is not None else (
      ["cdgan"] if has_purifier else [])
  threats = _threats()  # Checked first: a typo should not wait for the models to load.
  stream = _stream()
  classifiers = [classifiers_lib.load_classifier(spec, crop_fraction=FLAGS.center_crop)
                 for spec in FLAGS.classifiers]
  defenses = registry.build_defenses(defense_names, FLAGS.sub_model, FLAGS.super_model,
                                     FLAGS.purifier, FLAGS.purifier_size, FLAGS.purifier_scale,
                                     compute_dtype=FLAGS.purifier_dtype,
                                     jit_compile=FLAGS.jit_compile)
  if FLAGS.purifier_noise or FLAGS.purifier_random_resize:
    defenses = randomized.randomize(
        defenses, FLAGS.randomize if FLAGS.randomize is not None else list(defenses),
        FLAGS.purifier_noise, FLAGS.purifier_random_resize, seed=FLAGS.seed)
  elif FLAGS.randomize:
    raise cli.UsageError("--randomize needs --purifier_noise or --purifier_random_resize")
  logging.info("Evaluating %s: %s x %s", stream.source.description,
               ", ".join(c.name for c in classifiers), ", ".join(defenses) or "no defense")
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  predictions_path = os.path.join(FLAGS.output_dir, "predictions.csv")
  with files.atomic_path(predictions_path) as tmp, open(tmp, "w", newline="") as predictions:
    runner = evaluator_lib.Evaluator(classifiers, defenses, threats, seed=FLAGS.seed,
                                     prediction_file=predictions,
                                     eot_samples=FLAGS.eot_samples, draws=FLAGS.draws,
                                     should_stop=lambda: stop.requested)
    batches = _until_stopped(iter(stream), stop)
    first = next(batches, None)
    results = runner.run(itertools.chain([first], batches) if first is not None else [])
  results["settings"] = {
      "inputs": stream.source.description, "images": runner.images_seen,
      "skipped": len(stream.source.skipped),
      "skipped_examples": [f"{s.path}: {s.reason}" for s in stream.source.skipped[:20]],
      "resized_to_common_size": stream.source.resized,
      "crop": FLAGS.crop, "center_crop": FLAGS.center_crop,
      "classifiers": {c.name: repr(c) for c in classifiers},
      "defenses": list(defenses), "attacks": FLAGS.attack,
      "eps": FLAGS.eps, "steps": FLAGS.steps, "queries": FLAGS.queries,
      "eps_l2": FLAGS.eps_l2, "purifier_noise": FLAGS.purifier_noise,
      "purifier_random_resize": FLAGS.purifier_random_resize,
      "eot_samples": FLAGS.eot_samples, "draws": FLAGS.draws,
      "purifier_dtype": FLAGS.purifier_dtype, "jit_compile": FLAGS.jit_compile,
      "complete": not stop.requested}
  if stop.requested:
    results["settings"]["stopped"] = (f"by {stop.name} after {runner.images_seen} of "
                                      f"{stream.source.count} images")
  paths = reports.write_reports(results, FLAGS.output_dir)
  if first is not None and FLAGS.num_samples:
    columns, titles, captions = samples.sample_columns(
        first, defenses.get("cdgan"), classifiers[0], FLAGS.num_samples)
    reports.sample_grid(columns, titles, captions,
                        os.path.join(FLAGS.output_dir, "samples.png"))
  print(reports.markdown_table(results))
  print(f"Wrote {', '.join(paths.values())}")
  stop.raise_if_requested(
      f"wrote the results of {runner.images_seen} of {stream.source.count} images to "
      f"{FLAGS.output_dir} (results.json: complete false); rerun to evaluate them all")
  if FLAGS.export_dir:
    _export(classifiers, defenses.get("cdgan"))


def _export(classifiers, purifier):
  if not isinstance(purifier, cdgan_lib.CdganPurifier):
    purifier = None  # An exported purifier SavedModel is already exported.
  if purifier is not None:
    path = saving.export_purifier(purifier, os.path.join(FLAGS.export_dir, "purifier"),
                                  FLAGS.overwrite, FLAGS.max_pixels)
    print(f"Exported the purifier to {path}")
  for c in classifiers:
    if c.trackable is None:
      logging.warning("not exporting %s: TFLite models cannot go into a SavedModel", c.name)
      continue
    path = saving.export_defended(c, purifier, os.path.join(FLAGS.export_dir, c.name),
                                  FLAGS.overwrite, FLAGS.max_pixels)
    print(f"Exported the defended {c.name} to {path}")


if __name__ == "__main__":
  cli.run(main)
