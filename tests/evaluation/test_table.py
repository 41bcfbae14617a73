"""Tests of the streaming accuracy table and its reports."""

import json

import numpy as np
import pytest
from PIL import Image

from cdgan_tf.evaluation import intervals
from cdgan_tf.evaluation import reports
from cdgan_tf.evaluation import table as evaluation


def _table():
  table = evaluation.AccuracyTable()
  labels = np.array([0, 1, 2, -1])  # The last label is unknown: never counted.
  table.add("m", "normal", [0, 1, 2, 0], labels)
  table.add("m", "attack", [1, 1, 0, 0], labels)
  table.add("m", "defense", [0, 1, 0, 0], labels)  # cdgan by default
  table.add("m", "defense_clean", [0, 1, 2, 0], labels)
  table.add("m", "defense", [0, 0, 0, 0], labels, defense="jpeg75")
  table.set_attack_params("pgd_classifier", {"eps": 0.03})
  table.add("m", "attack", [2, 2, 2, 0], labels, attack="pgd_classifier")
  table.add("m", "defense", [0, 2, 2, 0], labels, defense="jpeg75", attack="pgd_classifier")
  return table


def test_accuracies_stream_and_skip_unknown_labels():
  table = _table()
  table.add("m", "normal", [5], [5])  # A second batch accumulates.
  assert table.accuracy("m", "normal") == 1.0
  assert table.accuracy("m", "attack") == pytest.approx(1 / 3)
  assert table.accuracy("m", "defense") == pytest.approx(2 / 3)
  assert table.accuracy("m", "defense", defense="jpeg75") == pytest.approx(1 / 3)
  assert table.accuracy("m", "attack", attack="pgd_classifier") == pytest.approx(1 / 3)
  assert table.accuracy("other", "normal") is None
  with pytest.raises(ValueError, match="condition"):
    table.add("m", "robust", [0], [0])


def test_results_layout():
  results = _table().to_dict(settings={"images": 4})
  entry = results["classifiers"]["m"]
  assert entry["normal"] == 1.0 and entry["n"] == 3
  assert entry["defense"] == entry["defenses"]["cdgan"]["defense"]
  assert set(entry["defenses"]) == {"cdgan", "jpeg75"}
  assert "defense_clean" not in entry["defenses"]["jpeg75"]
  pgd = results["attacks"]["pgd_classifier"]
  assert pgd["params"] == {"eps": 0.03}
  assert pgd["classifiers"]["m"]["attack"] == pytest.approx(1 / 3)
  assert pgd["classifiers"]["m"]["defenses"]["jpeg75"]["defense"] == pytest.approx(2 / 3)
  assert results["settings"] == {"images": 4}
  json.dumps(results)  # Serialisable.


def test_reports_are_written(tmp_path):
  results = _table().to_dict()
  paths = reports.write_reports(results, str(tmp_path))
  markdown = open(paths["markdown"]).read()
  assert ("| m | 3 | 100.0 ± 28.1 | 33.3 ± 36.5 | 66.7 ± 36.5 | 100.0 ± 28.1 | "
          "66.7 ± 36.5 (transfer) |") in markdown
  assert "## Attack `pgd_classifier` (eps=7.65/255)" in markdown  # 0.03 * 255
  assert json.load(open(paths["json"])) == results
  with Image.open(paths["chart"]) as chart:
    assert chart.size[0] >= 600
  assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
  grid = tmp_path / "grid.png"
  reports.sample_grid([np.zeros((2, 8, 8, 3)), np.ones((2, 4, 4, 3))], ["a", "b"],
                         [["x", "y"], ["z", "w"]], str(grid))
  with Image.open(grid) as image:
    assert image.size[0] > image.size[1] * 0.5


def test_chart_rows_pair_clean_and_adversarial_per_defense(tmp_path):
  results = {"classifiers": {"c": {
      "normal": 0.8, "attack": 0.1, "n": 10,
      "defenses": {"resize": {"defense": 0.2, "defense_clean": 0.5},
                   "cdgan": {"defense": 0.4, "defense_clean": 0.6},
                   "jpeg75": {"defense": 0.15}}}}}
  assert reports.chart_rows(results["classifiers"]["c"]) == [
      ("no defense", 0.8, 0.1), ("cdgan", 0.6, 0.4), ("jpeg75", None, 0.15),
      ("resize", 0.5, 0.2)]
  results["classifiers"]["c"]["ci95"] = {"normal": [0.5, 0.9], "attack": [0.0, 0.4]}
  results["classifiers"]["c"]["defenses"]["cdgan"]["ci95"] = {"defense": [0.2, 0.6]}
  assert reports.chart_intervals(results["classifiers"]["c"]) == [
      ([0.5, 0.9], [0.0, 0.4]), (None, [0.2, 0.6]), (None, None), (None, None)]
  reports.bar_chart(results, str(tmp_path / "chart.png"))
  with Image.open(tmp_path / "chart.png") as image:
    assert image.size[0] > 300


def test_intervals_paired_tests_and_worst_case_by_value():
  table = evaluation.AccuracyTable()
  labels = np.zeros(10, int)
  right = lambda k: np.where(np.arange(10) < k, 0, 1)  # noqa: E731  first k correct
  table.add("m", "normal", right(9), labels)
  table.add("m", "attack", right(1), labels)
  table.add("m", "defense", right(8), labels)  # cdgan: 7 images only it gets right
  table.add("m", "defense", right(2), labels, defense="jpeg75")
  table.add("m", "defense_clean", right(9), labels)
  table.add("m", "attack", right(0), labels, attack="square")
  table.add("m", "defense", right(5), labels, attack="square")
  table.add("m", "defense", right(3), labels, defense="jpeg75", attack="square")
  results = table.to_dict()
  entry = results["classifiers"]["m"]
  assert entry["ci95"]["attack"] == pytest.approx(list(intervals.wilson(1, 10)))
  cdgan = entry["defenses"]["cdgan"]
  assert cdgan["ci95"]["defense"] == pytest.approx(list(intervals.wilson(8, 10)))
  # Hand: discordant 7 vs 0 -> 2 / 2^7; vs jpeg75 6 vs 0 -> 2 / 2^6; clean 0 vs 0 -> 1.
  assert cdgan["p_value"]["defense"] == {"no_defense": pytest.approx(2 / 128),
                                         "jpeg75": pytest.approx(2 / 64)}
  assert cdgan["p_value"]["defense_clean"] == {"no_defense": 1.0}
  square = results["attacks"]["square"]["classifiers"]["m"]["defenses"]["cdgan"]
  assert square["p_value"]["defense"]["no_defense"] == pytest.approx(2 / 32)  # 5 vs 0
  worst = entry["worst_case"]
  assert worst["no_defense"] == {"accuracy": 0.0, "attack": "square",
                                 "ci95": pytest.approx(list(intervals.wilson(0, 10)))}
  assert (worst["cdgan"]["accuracy"], worst["cdgan"]["attack"]) == (0.5, "square")
  assert (worst["jpeg75"]["accuracy"], worst["jpeg75"]["attack"]) == (0.2, "transfer")
  assert results["statistics"] == {"ci95": "wilson", "p_value": "mcnemar_exact"}
  markdown = reports.markdown_table(results)
  assert "| m | 10 | 90.0 ±" in markdown and "50.0 ± 26.3 (square)" in markdown
  assert "| m | cdgan | 0.0156 | 1 |  | 0.0312 |" in markdown
  low, high = intervals.wilson(5, 10)
  assert f"{50 * (high - low):.1f}" == "26.3"
