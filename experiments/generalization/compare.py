r"""Two purifiers on the same generalization-table images, paired: which one to keep.

table.py writes one evaluation per (row, eval tag) in its work folder, each with a
`predictions.csv` of every image. This compares two eval tags image by image, pooled
over the rows (and targets) both have: top-1 under attack and on clean images, each with
its 95 % Wilson interval, the difference, and the exact McNemar p-value of the paired
outcomes (the same images, targets and attacked PNGs on both sides). Use it on the
VALIDATION split (`--dataset=cifar10_val`) to choose between purifiers; the test split
only reports the chosen one.

  python -m experiments.generalization.compare --work=/work/scratch/gen/val \
      --baseline=shipped --candidate=warm_transfer [--output=docs/.../compare]

Prints a Markdown table; --output also writes <output>.md and <output>.json.
"""

import csv
import glob
import os
from typing import Dict, Tuple

from cdgan_tf import cli  # First (imports nothing heavy).
if __name__ == "__main__":
  cli.start()  # Before TensorFlow is imported: its logs stay quiet unless --verbose.

from absl import flags  # pylint: disable=g-bad-import-order

from cdgan_tf.common import files
from cdgan_tf.evaluation import intervals

flags.DEFINE_string("work", None, "The table's work folder (<row>_<eval tag>/ inside).")
flags.DEFINE_string("baseline", "shipped", "Eval tag of the purifier to beat.")
flags.DEFINE_string("candidate", None, "Eval tag of the new purifier.")
flags.DEFINE_string("defense", "cdgan", "The defense column compared.")
flags.DEFINE_string("output", "", "Also write <output>.md and <output>.json.")
flags.mark_flags_as_required(["work", "candidate"])
FLAGS = flags.FLAGS

Outcomes = Dict[Tuple[str, str, str], bool]  # (row, classifier, image key) -> correct


def read_outcomes(folder: str, defense: str) -> Dict[str, Outcomes]:
  """{"attacked" | "clean": {(row, classifier, key): correct}} of one evaluation folder."""
  row = os.path.basename(folder)
  found = {"attacked": {}, "clean": {}}
  with open(os.path.join(folder, "predictions.csv"), newline="") as f:
    for record in csv.DictReader(f):
      if record["defense"] != defense:
        continue
      kind = {"defense": "attacked", "defense_clean": "clean"}.get(record["condition"])
      if kind:
        found[kind][(row, record["classifier"], record["key"])] = (
            record["prediction"] == record["label"])
  return found


def tag_outcomes(work: str, tag: str, defense: str) -> Dict[str, Outcomes]:
  """The outcomes of every `<row>_<tag>` folder of `work`, keyed without the tag."""
  merged = {"attacked": {}, "clean": {}}
  suffix = f"_{tag}"
  for folder in sorted(glob.glob(os.path.join(work, f"*{suffix}"))):
    if not os.path.isfile(os.path.join(folder, "predictions.csv")):
      continue
    for kind, outcomes in read_outcomes(folder, defense).items():
      for (row, classifier, key), ok in outcomes.items():
        merged[kind][(row[:-len(suffix)], classifier, key)] = ok
  return merged


def compare(baseline: Dict[str, Outcomes], candidate: Dict[str, Outcomes]) -> dict:
  """Paired comparison on the keys both sides have, per kind (attacked, clean).

  Returns:
    {kind: {"pairs", "baseline", "candidate" (top-1 in %), "baseline_ci95",
    "candidate_ci95" (in %), "difference_points", "mcnemar_p"}}; clean pairs are
    counted once per (classifier, image), whatever the row.
  """
  result = {}
  for kind in ("attacked", "clean"):
    b_side, c_side = baseline[kind], candidate[kind]
    if kind == "clean":  # The same clean image in every row: count it once.
      b_side = {(c, k): v for (_, c, k), v in b_side.items()}
      c_side = {(c, k): v for (_, c, k), v in c_side.items()}
    keys = sorted(set(b_side) & set(c_side))
    if not keys:
      raise cli.UsageError(f"no {kind} outcome is shared by the two tags")
    first, second = [b_side[k] for k in keys], [c_side[k] for k in keys]
    n = len(keys)
    entry = {"pairs": n}
    for name, values in (("baseline", first), ("candidate", second)):
      entry[name] = round(100.0 * sum(values) / n, 2)
      low, high = intervals.wilson(sum(values), n)
      entry[f"{name}_ci95"] = [round(100.0 * low, 2), round(100.0 * high, 2)]
    entry["difference_points"] = round(entry["candidate"] - entry["baseline"], 2)
    entry["mcnemar_p"] = intervals.paired_p_value(first, second)
    result[kind] = entry
  return result


def markdown(result: dict, baseline: str, candidate: str) -> str:
  lines = [f"| images x targets | {baseline} | {candidate} | difference | McNemar p |",
           "|---|---|---|---|---|"]
  for kind, e in result.items():
    lines.append(f"| {kind} ({e['pairs']} pairs) | {e['baseline']:.2f} "
                 f"[{e['baseline_ci95'][0]:.1f}, {e['baseline_ci95'][1]:.1f}] | "
                 f"{e['candidate']:.2f} [{e['candidate_ci95'][0]:.1f}, "
                 f"{e['candidate_ci95'][1]:.1f}] | {e['difference_points']:+.2f} | "
                 f"{e['mcnemar_p']:.3g} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  if not os.path.isdir(FLAGS.work):
    raise cli.UsageError(f"--work={FLAGS.work} is not a folder")
  sides = [tag_outcomes(FLAGS.work, tag, FLAGS.defense)
           for tag in (FLAGS.baseline, FLAGS.candidate)]
  result = compare(*sides)
  text = markdown(result, FLAGS.baseline, FLAGS.candidate)
  print(text, end="")
  if FLAGS.output:
    files.write_json(FLAGS.output + ".json", {
        "work": FLAGS.work, "baseline": FLAGS.baseline, "candidate": FLAGS.candidate,
        "defense": FLAGS.defense, "statistics": "95 % Wilson intervals; exact McNemar "
        "test on the paired outcomes", **result}, indent=1)
    files.write_text(FLAGS.output + ".md", text)


if __name__ == "__main__":
  cli.run(main)
