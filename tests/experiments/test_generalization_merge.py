"""experiments/generalization/merge.py: several purifiers' tables side by side, with the
held-out rows pooled from the per-image predictions (checked against hand counts)."""

import csv
import json
import os
import subprocess
import sys

import pytest

from experiments.generalization import rows as rows_lib
from tests.conftest import REPO_ROOT

TARGETS = ("t1", "t2")
ROWS = ({"name": "mix 8", "held_out": ""}, {"name": "new 8", "held_out": "new surrogate"})


def _predictions(folder, defenses, correct):
  """4 images x 2 targets; correct[(defense, condition)] = how many images of each
  target are right (the first ones)."""
  os.makedirs(folder)
  with open(os.path.join(folder, "predictions.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["key", "label", "classifier", "attack", "defense", "condition",
                     "prediction"])
    for target in TARGETS:
      for (defense, condition), n in correct.items():
        if defense not in ("",) + tuple(defenses):
          continue
        for i in range(4):
          writer.writerow([f"img{i}", 1, target, "transfer", defense, condition,
                           1 if i < n else 0])


def _table(work, tag, defenses, cells, rmsd=5.0):
  """A table.py output JSON of 4 images; cells[defense] = (attacked, clean) top-1 %."""
  table = {"dataset": "imagenet", "images": 4, "defenses": list(defenses),
           "purifier": {"sub": f"{tag}/sub", "super": f"{tag}/super"},
           "command": {"argv": ["table.py", f"--eval_tag={tag}"]}, "rows": []}
  for row in ROWS:
    targets = {}
    for target in TARGETS:
      targets[target] = {"normal": 100.0, "no_defense": 25.0}
      for defense in defenses:
        targets[target][defense], targets[target][f"{defense}_clean"] = cells[defense]
    table["rows"].append({"row": row, "perturbation": {"rmsd_255": rmsd}, "targets": targets})
  path = os.path.join(work, f"{tag}.json")
  with open(path, "w") as f:
    json.dump(table, f)
  return path


def _merge(work, tables, output):
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  return subprocess.run([sys.executable, "-m", "experiments.generalization.merge",
                         f"--work={work}", f"--tables={','.join(tables)}",
                         f"--output={output}"], env=env, cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=120)


def test_tables_side_by_side_and_held_out_rows_pooled(tmp_path):
  work = str(tmp_path)
  # Held-out row: no defense 1 of 4 right per target, a: 3 of 4 (clean 4), b: 1 (clean 2),
  # jpeg75 2 (clean 3). The mix row is left out of the pooled summary.
  for row, a_right in (("new_8", 3), ("mix_8", 0)):
    _predictions(f"{work}/{row}_a", ("cdgan", "jpeg75"),
                 {("", "attack"): 1, ("", "normal"): 4, ("cdgan", "defense"): a_right,
                  ("cdgan", "defense_clean"): 4, ("jpeg75", "defense"): 2,
                  ("jpeg75", "defense_clean"): 3})
    _predictions(f"{work}/{row}_b", ("cdgan",),
                 {("", "attack"): 1, ("", "normal"): 4, ("cdgan", "defense"): 1,
                  ("cdgan", "defense_clean"): 2})
  a = _table(work, "a", ("cdgan", "jpeg75"), {"cdgan": (75.0, 100.0), "jpeg75": (50.0, 75.0)})
  b = _table(work, "b", ("cdgan",), {"cdgan": (25.0, 50.0)})
  run = _merge(work, [f"A={a}", f"B={b}"], f"{work}/merged")
  assert run.returncode == 0, run.stderr
  merged = json.loads(open(f"{work}/merged.json").read())
  assert merged["columns"] == ["CD-GAN A", "jpeg75", "CD-GAN B"]
  first = merged["rows"][0]
  assert (first["row"], first["target"]) == ("mix 8", "t1")
  assert first["CD-GAN A"] == [75.0, 100.0] and first["CD-GAN B"] == [25.0, 50.0]
  summary = merged["held_out_summary"]
  assert summary["no defense"]["attacked"]["n"] == 8  # 4 images x 2 targets, one row
  assert summary["no defense"]["attacked"]["top1"] == 25.0
  assert summary["no defense"]["clean"]["top1"] == 100.0
  assert summary["CD-GAN A"]["attacked"]["top1"] == 75.0
  assert summary["CD-GAN A"]["clean"] == {"n": 8, "top1": 100.0, "ci95": [67.56, 100.0]}
  assert summary["CD-GAN B"]["attacked"]["top1"] == 25.0
  assert summary["jpeg75"]["clean"]["top1"] == 75.0
  # From the table cells: no defense 25 %, A 75 % (>= 27), B 25 % (< 27).
  assert summary["CD-GAN A"]["cells_at_least_no_defense_plus_2"] == "2 of 2"
  assert summary["CD-GAN B"]["cells_at_least_no_defense_plus_2"] == "0 of 2"
  text = open(f"{work}/merged.md").read()
  assert "| new 8 | new surrogate | 5.00 | t2 | 100.0 | 25.0 | 75.0 / 100.0 |" in text


def test_tables_of_other_attacked_pngs_are_refused(tmp_path):
  work = str(tmp_path)
  a = _table(work, "a", ("cdgan",), {"cdgan": (75.0, 100.0)})
  c = _table(work, "c", ("cdgan",), {"cdgan": (75.0, 100.0)}, rmsd=6.0)
  run = _merge(work, [f"A={a}", f"C={c}"], f"{work}/merged")
  assert run.returncode == 2 and "other images, rows or attacked PNGs" in run.stderr
  assert not os.path.exists(f"{work}/merged.json")
  run = _merge(work, ["A"], f"{work}/merged")
  assert run.returncode == 2 and "expected name=path.json" in run.stderr


def test_row_folders_are_the_tables():
  assert rows_lib.slug("mifgsm_di 8 v1_0.5+v1_0.25") == "mifgsm_di_8_v1_0_5_v1_0_25"
