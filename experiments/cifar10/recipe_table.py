r"""The recipe-search table: every recipe's results.json side by side, with the targets.

Reads <runs>/<recipe>/results_{strong,weak}/results.json (written by the stage `compare` of the cifar10_* recipes) and
writes <output>.md and <output>.json: per recipe and target classifier, normal / attack /
CD-GAN / CD-GAN on clean / resize / jpeg75 under the strong transfer attack, the same under
the weak one, and whether each of the issue's targets is met.

  python experiments/cifar10/recipe_table.py --runs=/work/scratch/cifar/recipes \
      --recipes=paper,clean,chained,feature,combo --output=docs/results/cifar10/recipes
"""

import json
import os

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

from absl import flags  # pylint: disable=g-bad-import-order

from cdgan_tf.common import files

flags.DEFINE_string("runs", "/work/scratch/cifar/recipes", "Folder of the recipe runs.")
flags.DEFINE_list("recipes", ["paper", "clean", "chained", "feature", "combo"],
                  "Recipes, in table order.")
flags.DEFINE_string("output", "docs/results/cifar10/recipes", "Output path without suffix.")
FLAGS = flags.FLAGS


def _pct(value):
  return None if value is None else round(100.0 * value, 2)


def row(entry: dict) -> dict:
  """The figures of one classifier entry of results.json, in %."""
  defenses = entry.get("defenses", {})
  get = lambda d, k: _pct(defenses.get(d, {}).get(k))  # noqa: E731
  return {"normal": _pct(entry.get("normal")), "attack": _pct(entry.get("attack")),
          "defense": _pct(entry.get("defense")),
          "defense_clean": _pct(entry.get("defense_clean")),
          "resize": get("resize", "defense"), "resize_clean": get("resize", "defense_clean"),
          "jpeg75": get("jpeg75", "defense"), "jpeg75_clean": get("jpeg75", "defense_clean")}


def targets(strong: dict, weak: dict) -> dict:
  """The issue's targets for one classifier: name -> (value, met)."""
  out = {}
  if strong:
    out["defense >= 0.60 x normal"] = (strong["defense"] / strong["normal"],
                                       strong["defense"] >= 0.6 * strong["normal"])
    out["defense_clean >= normal - 10"] = (strong["defense_clean"] - strong["normal"],
                                           strong["defense_clean"] >= strong["normal"] - 10)
    out["defense_clean >= resize_clean + 15"] = (
        strong["defense_clean"] - strong["resize_clean"],
        strong["defense_clean"] >= strong["resize_clean"] + 15)
    out["defense >= resize + 10 and jpeg75 + 10"] = (
        strong["defense"] - max(strong["resize"], strong["jpeg75"]),
        strong["defense"] >= max(strong["resize"], strong["jpeg75"]) + 10)
  if weak:
    out["weak: defense > attack and > jpeg75"] = (
        weak["defense"] - max(weak["attack"], weak["jpeg75"]),
        weak["defense"] > max(weak["attack"], weak["jpeg75"]))
  return out


def _fmt(value):
  return "" if value is None else f"{value:.2f}"


def main(argv):
  del argv
  table = {}
  for recipe in FLAGS.recipes:
    table[recipe] = {}
    for attack in ("strong", "weak"):
      path = os.path.join(FLAGS.runs, recipe, f"results_{attack}", "results.json")
      if os.path.exists(path):
        results = files.read_json(path)
        for name, entry in results["classifiers"].items():
          table[recipe].setdefault(name, {})[attack] = row(entry)
  lines = ["# CD-GAN recipes on CIFAR-10 (top-1 %, 2,000 test images)", "",
           "Strong transfer attack (MI-FGSM eps 16/255 on the VGG surrogate, RMSD 13.2):",
           "", "| recipe | classifier | normal | attack | CD-GAN | CD-GAN clean | resize | "
           "resize clean | jpeg75 | jpeg75 clean |", "|" + "---|" * 10]
  for recipe, per_classifier in table.items():
    for name, data in per_classifier.items():
      r = data.get("strong")
      if r:
        lines.append("| " + " | ".join([recipe, name] + [_fmt(r[k]) for k in (
            "normal", "attack", "defense", "defense_clean", "resize", "resize_clean",
            "jpeg75", "jpeg75_clean")]) + " |")
  lines += ["", "Weak transfer attack (DAmageNet-like strength):", "",
            "| recipe | classifier | normal | attack | CD-GAN | CD-GAN clean | resize | "
            "jpeg75 |", "|" + "---|" * 8]
  for recipe, per_classifier in table.items():
    for name, data in per_classifier.items():
      r = data.get("weak")
      if r:
        lines.append("| " + " | ".join([recipe, name] + [_fmt(r[k]) for k in (
            "normal", "attack", "defense", "defense_clean", "resize", "jpeg75")]) + " |")
  lines += ["", "Targets (met: yes/no, with the margin):", "",
            "| recipe | classifier | target | value | met |", "|---|---|---|---|---|"]
  summary = {}
  for recipe, per_classifier in table.items():
    for name, data in per_classifier.items():
      checks = targets(data.get("strong"), data.get("weak"))
      summary.setdefault(recipe, {})[name] = {k: {"value": v, "met": m}
                                              for k, (v, m) in checks.items()}
      for target, (value, met) in checks.items():
        lines.append(f"| {recipe} | {name} | {target} | {value:.2f} | "
                     f"{'yes' if met else 'no'} |")
  os.makedirs(os.path.dirname(FLAGS.output) or ".", exist_ok=True)
  files.write_text(FLAGS.output + ".md", "\n".join(lines) + "\n")
  files.write_json(FLAGS.output + ".json", {"table": table, "targets": summary})
  print("\n".join(lines))


if __name__ == "__main__":
  cli.run(main)
