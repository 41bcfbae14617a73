"""The evaluator's query attacks (square, square_l2) on a model with a known boundary."""

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.attacks import square
from cdgan_tf.classifiers import base
from cdgan_tf.data.batch import Batch
from cdgan_tf.defenses import baselines
from cdgan_tf.evaluation import evaluator as evaluator_lib
from cdgan_tf.evaluation import reports


def _brightness_classifier():
  """Class 1 iff the mean pixel is above 0.5 (forward-only, like a TFLite model)."""
  def model(images):
    mean = tf.reduce_mean(images, axis=[1, 2, 3])
    return tf.stack([tf.zeros_like(mean), 100.0 * (mean - 0.5)], axis=1)
  return base.Classifier(model, name="bright", input_size=(8, 8), value_range="0_1",
                         num_outputs=2, differentiable=False)


def _batch():
  rng = np.random.default_rng(0)
  noise = rng.uniform(-0.1, 0.1, size=[3, 8, 8, 3])
  noise -= noise.mean(axis=(1, 2, 3), keepdims=True)
  clean = np.clip(np.array([0.51, 0.9, 0.7])[:, None, None, None] + noise, 0, 1)
  return Batch(labels=np.array([1, 1, 0]), keys=["a", "b", "c"],
               clean=clean.astype(np.float32))


@pytest.mark.parametrize("name", ["square", "square_l2"])
def test_square_through_the_evaluator(name):
  threat = evaluator_lib.ThreatModel.parse(name, eps="8/255", queries=200, eps_l2="0.5")
  runner = evaluator_lib.Evaluator([_brightness_classifier()],
                                   {"identity": baselines.identity()}, [threat], seed=0)
  results = runner.run([_batch()])
  block = results["attacks"][name]
  assert block["params"]["queries"] == 200 and block["params"]["norm"] == (
      "linf" if name == "square" else "l2")
  entry = block["classifiers"]["bright"]
  # Only the 0.51 image is flippable; the 0.7 one is wrong from the start.
  assert entry["attack"] == pytest.approx(1 / 3)
  assert entry["defenses"]["identity"]["defense"] == pytest.approx(1 / 3)
  assert results["classifiers"]["bright"]["normal"] == pytest.approx(2 / 3)
  queries = block["queries"]["bright"]
  classifier, batch = _brightness_classifier(), _batch()
  direct = square.square_attack(lambda x: classifier(x).numpy(), batch.clean, batch.labels,
                                threat.eps, norm=threat.params()["norm"], queries=200)
  expected = square.query_stats(direct, batch.labels)
  for defense in ("no_defense", "identity"):
    stats = queries[defense]
    assert (stats["attacked"], stats["fooled"]) == (2, 1)  # the 0.9 image survives
    assert stats["failure_rate"][-1] == [200, 0.5]
    assert stats["failure_rate"][0] == [1, 1.0]
    assert {k: v for k, v in stats.items()
            if k not in ("failure_rate", "tied_proposals")} == expected
    assert stats["tied_proposals"] < 0.5  # float scores rarely tie
  worst = results["classifiers"]["bright"]["worst_case"]
  assert worst["identity"]["attack"] == name
  markdown = reports.markdown_table(results)
  assert "| bright | identity | 2 | 1 |" in markdown


def test_query_attack_settings_are_checked():
  with pytest.raises(ValueError, match="queries"):
    evaluator_lib.ThreatModel.parse("square", queries=0)
  with pytest.raises(ValueError, match="pixel range"):
    evaluator_lib.ThreatModel.parse("square", eps="8")
  threat = evaluator_lib.ThreatModel.parse("square_l2", eps_l2="2")
  assert threat.params() == {"eps": 2.0, "norm": "l2", "queries": 1000, "schedule": 10000}


def test_query_curves_are_drawn(tmp_path):
  runner = evaluator_lib.Evaluator(
      [_brightness_classifier()], {}, [evaluator_lib.ThreatModel.parse("square", queries=20)])
  paths = reports.write_reports(runner.run([_batch()]), str(tmp_path))
  assert paths["curves"].endswith("query_curves.png")
  assert (tmp_path / "query_curves.png").stat().st_size > 1000
  assert "curves" not in reports.write_reports({"classifiers": {}}, str(tmp_path / "b"))


def test_a_stop_inside_a_query_batch_drops_that_batch_whole(tmp_path):
  polls = []
  threat = evaluator_lib.ThreatModel.parse("square", eps="8/255", queries=200)
  second = _batch()
  second = Batch(labels=second.labels, keys=["d", "e", "f"], clean=second.clean)
  with open(tmp_path / "predictions.csv", "w", newline="") as predictions:
    runner = evaluator_lib.Evaluator(
        [_brightness_classifier()], {"identity": baselines.identity()}, [threat],
        prediction_file=predictions,
        should_stop=lambda: polls.append(1) or runner.images_seen > 0 and len(polls) > 300)
    results = runner.run([_batch(), second, _batch()])
  # The first batch counts in full; the second, stopped inside its square attack after
  # its clean images were scored, counts nowhere; the third is never started.
  assert runner.images_seen == 3 and runner.abandoned.startswith(
      "the batch under way (3 images) not counted: square bright/")
  entry = results["classifiers"]["bright"]
  assert entry["n"] == 3 and entry["normal"] == pytest.approx(2 / 3)
  assert results["attacks"]["square"]["classifiers"]["bright"]["attack"] == pytest.approx(
      1 / 3)
  assert results["attacks"]["square"]["queries"]["bright"]["no_defense"]["attacked"] == 2
  assert any(n.startswith("stopped inside a query attack") for n in results["notes"])
  rows = (tmp_path / "predictions.csv").read_text().splitlines()[1:]
  assert rows and {r.split(",")[0] for r in rows} == {"a", "b", "c"}
