"""experiments/generalization/compare.py: two purifiers paired on the same images."""

import csv

import pytest

from experiments.generalization import compare


def _write(folder, rows):
  """rows: (classifier, key, label, condition, prediction) of the cdgan defense."""
  folder.mkdir(parents=True)
  with open(folder / "predictions.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["key", "label", "classifier", "attack", "defense", "condition",
                     "prediction"])
    for classifier, key, label, condition, prediction in rows:
      writer.writerow([key, label, classifier, "transfer", "cdgan", condition, prediction])
      writer.writerow([key, label, classifier, "transfer", "", "attack", 9])  # ignored


def test_paired_counts_intervals_and_mcnemar_by_hand(tmp_path):
  """Two rows x 10 images on one target. Attacked: baseline right on images 0-5 of both
  rows (12 / 20), candidate right on 0-3 and 6-9 (16 / 20): discordant 2 + 2 vs 4 + 4 ->
  b = 4 (baseline only), c = 8 (candidate only); exact McNemar p = 2 * P(X <= 4),
  X ~ Bin(12, 1/2) = 2 * 794 / 4096. Clean (one row's copy counted once): 5 vs 7 of 10."""
  for row in ("pgd", "mifgsm"):
    for tag, right in (("shipped", range(0, 6)), ("new", [0, 1, 2, 3, 6, 7, 8, 9])):
      clean_right = range(5) if tag == "shipped" else range(7)
      rows = [("resnet", f"k{i}", 1, "defense", 1 if i in right else 0) for i in range(10)]
      rows += [("resnet", f"k{i}", 1, "defense_clean", 1 if i in clean_right else 0)
               for i in range(10)]
      _write(tmp_path / f"{row}_{tag}", rows)
  (tmp_path / "other_new").mkdir()  # A folder without predictions is skipped.
  result = compare.compare(*(compare.tag_outcomes(str(tmp_path), t, "cdgan")
                             for t in ("shipped", "new")))
  attacked, clean = result["attacked"], result["clean"]
  assert (attacked["pairs"], attacked["baseline"], attacked["candidate"]) == (20, 60.0, 80.0)
  assert attacked["difference_points"] == 20.0
  assert attacked["mcnemar_p"] == pytest.approx(2 * 794 / 4096)
  assert (clean["pairs"], clean["baseline"], clean["candidate"]) == (10, 50.0, 70.0)
  assert attacked["baseline_ci95"] == [38.66, 78.12]  # Wilson 12/20
  text = compare.markdown(result, "shipped", "new")
  assert "| attacked (20 pairs) | 60.00 [38.7, 78.1] | 80.00 [58.4, 91.9] | +20.00 |" in text
