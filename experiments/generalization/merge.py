r"""One generalization table from several purifiers' runs of table.py on the same PNGs.

table.py scores one purifier (one --eval_tag) per run; runs with the same --work and
--max_images share the attacked PNGs, so their cells are comparable. This merges them:
one line per (row, target) with normal, no defense and each purifier's columns
(attacked / clean), and a pooled summary over the held-out rows with 95 % Wilson
intervals from the per-image predictions, and how many held-out (row, target) cells each
purifier leaves at least 2 points above no defense (issue 18's first target).

  python -m experiments.generalization.merge --work=/work/scratch/t650 \
      --tables=imagenet-128=/work/scratch/t650/imagenet_650_shipped128.json,... \
      --output=docs/results/generalization/imagenet_650

Writes <output>.json and <output>.md.
"""

import csv
import os
from typing import Dict, List, Tuple

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start(tensorflow=False)

from absl import flags  # pylint: disable=g-bad-import-order

from cdgan_tf.common import files
from cdgan_tf.evaluation import intervals
from experiments.generalization.rows import slug

flags.DEFINE_string("work", None, "The tables' shared work folder (<row>_<eval tag>/).")
flags.DEFINE_list("tables", [], "name=path of each table.py output JSON, in column order.")
flags.DEFINE_string("output", None, "Writes <output>.json and <output>.md.")
flags.mark_flags_as_required(["work", "tables", "output"])
FLAGS = flags.FLAGS

MARGIN = 2.0  # Issue 18: every purifier >= no defense + 2 points on every held-out attack.


def _named(pairs: List[str]) -> List[Tuple[str, str]]:
  named = []
  for pair in pairs:
    name, sep, path = pair.partition("=")
    if not sep or not name or not path:
      raise cli.UsageError(f"--tables entry {pair!r}: expected name=path.json")
    named.append((name, path))
  return named


def columns(tables: Dict[str, dict]) -> List[Tuple[str, str, str]]:
  """(column title, table name, defense) in order: each table's defenses, every
  defense other than cdgan once (from the first table that has it)."""
  cols, seen = [], set()
  for name, table in tables.items():
    for defense in table["defenses"]:
      if defense == "cdgan":
        cols.append((f"CD-GAN {name}", name, defense))
      elif defense == "resize":
        cols.append((f"resize ({name}'s bottleneck)", name, defense))
      elif defense not in seen:
        seen.add(defense)
        cols.append((defense, name, defense))
  return cols


def merge(tables: Dict[str, dict]) -> dict:
  """The tables' cells side by side; refuses tables of other images or attacked PNGs.

  Raises:
    UsageError: the tables differ in dataset, image count, rows or perturbation.
  """
  first_name, first = next(iter(tables.items()))
  key = lambda t: (t["dataset"], t["images"], [  # noqa: E731
      (e["row"]["name"], e["perturbation"]["rmsd_255"]) for e in t["rows"]])
  for name, table in tables.items():
    if key(table) != key(first):
      raise cli.UsageError(f"table {name} has other images, rows or attacked PNGs than "
                           f"{first_name}: merge tables of one --work and --max_images")
  cols = columns(tables)
  rows = []
  for i, entry in enumerate(first["rows"]):
    for target, cells in entry["targets"].items():
      line = {"row": entry["row"]["name"], "held_out": entry["row"]["held_out"],
              "rmsd_255": entry["perturbation"]["rmsd_255"], "target": target,
              "normal": cells["normal"], "no_defense": cells["no_defense"]}
      for title, name, defense in cols:
        theirs = tables[name]["rows"][i]["targets"][target]
        line[title] = [theirs[defense], theirs[f"{defense}_clean"]]
      rows.append(line)
  return {"dataset": first["dataset"], "images": first["images"],
          "columns": [c[0] for c in cols], "rows": rows,
          "tables": {n: t["purifier"] for n, t in tables.items()}}


def outcomes(work: str, tag: str, defense: str, condition: str,
             rows: set) -> Dict[Tuple[str, str, str], bool]:
  """{(row slug, target, image key): correct} of `<row>_<tag>/predictions.csv` in `work`
  for one defense ("" for none) and condition (evaluate.py's: attack, defense,
  defense_clean), over the given row slugs."""
  found = {}
  for row in sorted(rows):
    path = os.path.join(work, f"{row}_{tag}", "predictions.csv")
    if not os.path.isfile(path):
      raise cli.UsageError(f"no {path}: table {tag!r} has not scored row {row}")
    with open(path, newline="") as f:
      for r in csv.DictReader(f):
        if r["defense"] == defense and r["condition"] == condition:
          found[(row, r["classifier"], r["key"])] = r["prediction"] == r["label"]
  return found


def _pooled(values: List[bool]) -> dict:
  low, high = intervals.wilson(sum(values), len(values))
  return {"n": len(values), "top1": round(100.0 * sum(values) / len(values), 2),
          "ci95": [round(100.0 * low, 2), round(100.0 * high, 2)]}


def held_out_summary(work: str, tables: Dict[str, dict], merged: dict) -> dict:
  """Pooled top-1 over the held-out rows and targets, with Wilson intervals, per column
  (clean images counted once per target and image; no defense's clean: normal)."""
  first = next(iter(tables.values()))
  held_out = {e["row"]["name"] for e in first["rows"] if e["row"]["held_out"]}
  rows = {slug(name) for name in held_out}
  tag_of = {name: table["command"]["eval_tag"] for name, table in tables.items()}
  first_tag = tag_of[next(iter(tables))]
  normal = outcomes(work, first_tag, "", "normal", rows)
  summary = {"no defense": {
      "attacked": _pooled(list(outcomes(work, first_tag, "", "attack", rows).values())),
      "clean": _pooled(list({(t, k): ok for (_, t, k), ok in normal.items()}.values()))}}
  for title, name, defense in columns(tables):
    attacked = outcomes(work, tag_of[name], defense, "defense", rows)
    clean = outcomes(work, tag_of[name], defense, "defense_clean", rows)
    once = {(target, key): ok for (_, target, key), ok in clean.items()}
    cells = [r for r in merged["rows"] if r["row"] in held_out]
    summary[title] = {
        "attacked": _pooled(list(attacked.values())), "clean": _pooled(list(once.values())),
        "cells_at_least_no_defense_plus_2": (
            f"{sum(r[title][0] >= r['no_defense'] + MARGIN for r in cells)} of "
            f"{len(cells)}")}
  return summary


def markdown(merged: dict, summary: dict) -> str:
  head = ["attack", "held out because", "RMSD", "target", "normal", "no defense",
          *merged["columns"]]
  lines = [f"{merged['dataset']}: top-1 (%) on {merged['images']} images, attacked / "
           "clean; a target is never scored on an attack that used it as surrogate.", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in merged["rows"]:
    cells = [r["row"], r["held_out"] or "(training mix)", f"{r['rmsd_255']:.2f}",
             r["target"], f"{r['normal']}", f"{r['no_defense']}",
             *[f"{r[c][0]} / {r[c][1]}" for c in merged["columns"]]]
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", "Held-out rows pooled over rows and targets (95 % Wilson intervals):", "",
            "| column | attacked | clean | held-out cells >= no defense + 2 |",
            "|---|---|---|---|"]
  for title, s in summary.items():
    attacked = s["attacked"]
    clean = s.get("clean")
    lines.append(
        f"| {title} | {attacked['top1']:.2f} [{attacked['ci95'][0]:.1f}, "
        f"{attacked['ci95'][1]:.1f}] (n = {attacked['n']}) | "
        + (f"{clean['top1']:.2f} [{clean['ci95'][0]:.1f}, {clean['ci95'][1]:.1f}]"
           if clean else "") + f" | {s.get('cells_at_least_no_defense_plus_2', '')} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  if not os.path.isdir(FLAGS.work):
    raise cli.UsageError(f"--work={FLAGS.work} is not a folder")
  tables = {}
  for name, path in _named(FLAGS.tables):
    if not os.path.isfile(path):
      raise cli.UsageError(f"--tables: no file {path}")
    table = files.read_json(path)
    table["command"]["eval_tag"] = _flag(table["command"]["argv"], "eval_tag", "eval")
    tables[name] = table
  merged = merge(tables)
  merged["held_out_summary"] = held_out_summary(FLAGS.work, tables, merged)
  files.write_json(FLAGS.output + ".json", merged, indent=1)
  text = markdown(merged, merged["held_out_summary"])
  files.write_text(FLAGS.output + ".md", text)
  print(text, end="")


def _flag(argv: List[str], name: str, default: str) -> str:
  """The value of --name=value in a recorded command line."""
  for arg in argv:
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
  return default


if __name__ == "__main__":
  cli.run(main)
