r"""The held-out-attack generalization table (issue 18, item 4), one command, resumable.

Rows are attacks: the training mix's members (`cdgan_tf.attacks.mixes`, at the middle
budget 8/255) and held-out ones (a surrogate / ensemble no training pair used, an
algorithm not in the mix, a weaker and a stronger budget). For each row the test
images are attacked once (PNGs under <work>/<row>/ in the clean folder's layout) and
`evaluate.py` scores every target that the row's attack did not use as a surrogate
(never a white-box score) with the defenses CD-GAN, bicubic through the same
bottleneck (resize), JPEG-75 and median-3x3, each under attack and on clean images.

  python experiments/generalization/table.py --dataset=cifar10 \
      --work=/work/scratch/mix/table_cifar10 --max_images=500 \
      --output=docs/results/generalization/cifar10_before

--sub_model/--super_model score other generators than the dataset's shipped ones (their
evaluations go to <row>_<eval_tag>/, the attacked PNGs are shared); --defenses=cdgan skips
the baselines. --dataset=cifar10_val is the held-out VALIDATION split (train images outside
the cifar10 mix's, see rows.CIFAR_VAL_ROWS), for choosing between purifiers.

Writes <output>.json and <output>.md. Finished rows are not redone (their PNG folder
holds `.done.json`, their evaluation `results.json`).
"""

import dataclasses
import json
import os
import subprocess
import sys
import time

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

from absl import flags  # pylint: disable=g-bad-import-order
from absl import logging  # pylint: disable=g-bad-import-order
import numpy as np  # pylint: disable=g-bad-import-order

from cdgan_tf.attacks import mix_set
from cdgan_tf.attacks import mixes
from cdgan_tf.attacks import settings as settings_lib
from cdgan_tf.attacks import transfer_files
from cdgan_tf.attacks import draws
from cdgan_tf.common import files
from cdgan_tf.data import image_files

from experiments.generalization.rows import DATASETS, DEFENSES, Row, markdown, slug
from experiments.generalization.splits import split_images

flags.DEFINE_enum("dataset", "cifar10", sorted(DATASETS), "Which table.")
flags.DEFINE_string("work", None, "Scratch folder of the attacked images and evaluations.")
flags.DEFINE_string("shared_dir", "../shared", "The shared data folder.")
flags.DEFINE_integer("max_images", 500, "Test images (folders.select_subset, as "
                     "evaluate.py --max_images).", lower_bound=1)
flags.DEFINE_list("rows", [], "Only these rows (names); default all.")
flags.DEFINE_string("output", None, "Output path without suffix (.json and .md).")
flags.DEFINE_integer("batch_size", 100, "Images per attack batch.", lower_bound=1)
flags.DEFINE_string("sub_model", "", "Sub generator to score (default: the dataset's).")
flags.DEFINE_string("super_model", "", "Super generator to score (default: the dataset's).")
flags.DEFINE_string("eval_tag", "eval", "Evaluations go to <work>/<row>_<eval_tag>/.")
flags.DEFINE_list("defenses", list(DEFENSES), "Defenses (evaluate.py names) to score.")
flags.DEFINE_enum("seeding", "image", draws.SEEDINGS, "image: each image's attack "
                  "randomness from its key (its PNG does not depend on --max_images or "
                  "--batch_size); batch: seeded by the batch's first index (tables made "
                  "before session 6 of issue 18).")
flags.mark_flags_as_required(["work", "output"])
FLAGS = flags.FLAGS


def attack_row(row: Row, images, out_dir: str, models: mix_set.Models,
               crop: str = "none") -> dict:
  """Writes the row's adversarial PNGs (keys as the clean folder's); returns stats.

  Each clean image is prepared with `crop` (image_files.prepare_clean) before the
  attack, as evaluate.py --crop prepares the clean side it pairs with."""
  done = os.path.join(out_dir, ".done.json")
  if os.path.exists(done):
    result = files.read_json(done)
    made_with = result.get("seeding", "batch")  # Rows made before record none.
    if made_with != FLAGS.seeding:
      raise cli.UsageError(f"{out_dir} was attacked with --seeding={made_with}, not "
                           f"--seeding={FLAGS.seeding}: use another --work")
    return result
  started = time.perf_counter()
  linf = 0.0
  rmsd = []
  for i in range(0, len(images), FLAGS.batch_size):
    batch = images[i:i + FLAGS.batch_size]
    pixels = np.stack([image_files.prepare_clean(image_files.load_rgb(p), crop)
                       for _, p, _ in batch])
    clean = pixels.astype(np.float32) / 255.0
    labels = np.array([l for _, _, l in batch], np.int64)
    seed = (draws.image_seeds(0, [key for key, _, _ in batch])
            if FLAGS.seeding == "image" else i)
    if row.kind == "pgd_l2":
      settings = settings_lib.AttackSettings.parse("pgd_l2", row.eps, steps=row.steps)
      adv = np.asarray(settings.run(models.surrogates(row.surrogates), clean, labels,
                                    seed=seed))
    else:
      member = mixes.MixAttack(row.name, row.kind, 1.0, (int(row.eps), int(row.eps)),
                               (row.surrogates,) if row.surrogates else (),
                               steps=row.steps, diversity_prob=row.diversity_prob,
                               feature_network=row.feature_network,
                               feature_layer=row.feature_layer)
      adv = mix_set.run_attack(member, int(row.eps), 0, models, clean, labels, seed=seed)
    adv_u8 = np.clip(np.round(adv * 255.0), 0, 255).astype(np.uint8)
    diff = adv_u8.astype(np.float64) - pixels
    linf = max(linf, float(np.abs(diff).max()))
    rmsd += list(np.sqrt(np.mean(diff**2, axis=(1, 2, 3))))
    for (key, _, _), u8 in zip(batch, adv_u8):
      transfer_files.write_png(transfer_files.output_path(out_dir, key), u8)
  result = {"images": len(images), "rmsd_255": round(float(np.mean(rmsd)), 3),
            "linf_255": linf, "seconds": round(time.perf_counter() - started, 1),
            "seeding": FLAGS.seeding}
  files.write_json(done, result)
  return result


def evaluate_row(row: Row, spec: dict, clean_dir: str, adv_dir: str, out_dir: str) -> dict:
  """Runs evaluate.py on the targets the row did not attack through."""
  path = os.path.join(out_dir, "results.json")
  if not os.path.exists(path):
    scored = [_resolve(p) for p in spec["targets"].values() if p not in row.surrogates]
    extra = [_resolve(f) for f in spec.get("evaluate_flags", ("--batch_size=100",))]
    command = [sys.executable, "evaluate.py", f"--clean_dir={clean_dir}",
               f"--adversarial_dir={adv_dir}", f"--classifiers={','.join(scored)}",
               f"--sub_model={spec['sub']}", f"--super_model={spec['super']}",
               f"--defenses={','.join(FLAGS.defenses)}", f"--max_images={FLAGS.max_images}",
               *extra, "--num_samples=0", f"--output_dir={out_dir}"]
    logging.info("%s: %s", row.name, " ".join(command))
    subprocess.run(command, check=True)
  return files.read_json(path)


def _resolve(spec: str) -> str:
  return mixes.resolve_spec(spec, FLAGS.shared_dir, "weights")


def _pct(x):
  return None if x is None else round(100.0 * x, 1)


def main(argv):
  del argv
  spec = dict(DATASETS[FLAGS.dataset])
  spec["sub"] = FLAGS.sub_model or spec["sub"]
  spec["super"] = FLAGS.super_model or spec["super"]
  clean_dir, images = split_images(spec, FLAGS.shared_dir, FLAGS.max_images)
  models = mix_set.Models(FLAGS.shared_dir, "weights")
  rows = [r for r in spec["rows"] if not FLAGS.rows or r.name in FLAGS.rows]
  table = {"dataset": FLAGS.dataset, "images": len(images), "defenses": list(FLAGS.defenses),
           "purifier": {"sub": spec["sub"], "super": spec["super"]},
           "command": {"argv": sys.argv}, "rows": []}
  for row in rows:
    adv_dir = os.path.join(FLAGS.work, slug(row.name))
    stats = attack_row(row, images, adv_dir, models, spec.get("crop", "none"))
    results = evaluate_row(row, spec, clean_dir, adv_dir, f"{adv_dir}_{FLAGS.eval_tag}")
    entry = {"row": dataclasses.asdict(row), "perturbation": stats, "targets": {}}
    for name, r in results["classifiers"].items():
      d = r["defenses"]
      entry["targets"][name] = {
          "normal": _pct(r["normal"]), "no_defense": _pct(r["attack"]),
          **{k: _pct(d[k]["defense"]) for k in FLAGS.defenses},
          **{f"{k}_clean": _pct(d[k]["defense_clean"]) for k in FLAGS.defenses}}
    table["rows"].append(entry)
    logging.info("%s: %s", row.name, json.dumps(entry["targets"]))
  files.write_json(FLAGS.output + ".json", table, indent=1)
  files.write_text(FLAGS.output + ".md", markdown(table))


if __name__ == "__main__":
  cli.run(main)
