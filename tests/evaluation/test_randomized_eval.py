"""The evaluator with a randomized defense (EOT, draws) and the decision-based attack."""

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.classifiers import base
from cdgan_tf.data.batch import Batch
from cdgan_tf.defenses import baselines
from cdgan_tf.defenses import randomized
from cdgan_tf.evaluation import evaluator as evaluator_lib
from cdgan_tf.evaluation import reports


def _classifier():
  """Class 1 iff the mean pixel is above 0.5; differentiable."""
  def model(images):
    mean = tf.reduce_mean(images, axis=[1, 2, 3])
    return tf.stack([tf.zeros_like(mean), 100.0 * (mean - 0.5)], axis=1)
  return base.Classifier(model, name="bright", input_size=(8, 8), value_range="0_1",
                         num_outputs=2, differentiable=True)


def _batch():
  rng = np.random.default_rng(0)
  noise = rng.uniform(-0.1, 0.1, size=[3, 8, 8, 3])
  noise -= noise.mean(axis=(1, 2, 3), keepdims=True)
  clean = np.clip(np.array([0.52, 0.9, 0.2])[:, None, None, None] + noise, 0, 1)
  return Batch(labels=np.array([1, 1, 0]), keys=["a", "b", "c"],
               clean=clean.astype(np.float32))


def test_eot_and_draws_through_the_evaluator():
  defenses = randomized.randomize({"identity": baselines.identity()}, ["identity"],
                                  noise=0.02, seed=0)
  threats = [evaluator_lib.ThreatModel.parse("pgd_defended", eps="4/255", steps=2),
             evaluator_lib.ThreatModel.parse("bpda", eps="4/255", steps=2)]
  runner = evaluator_lib.Evaluator([_classifier()], defenses, threats, eot_samples=4,
                                   draws=3)
  calls = defenses["identity_rand"].calls
  runner.add_batch(_batch())
  # clean: 3 draws; pgd_defended: 2 steps x 4 EOT samples + 3 draws; bpda: the same.
  assert int(calls.numpy()) == 3 + (2 * 4 + 3) * 2
  results = runner.run([])
  block = results["randomized"]
  assert block["draws"] == 3 and block["eot_samples"] == 4
  assert block["transforms"] == {"identity_rand": "Gaussian noise sigma 0.02"}
  per_attack = block["accuracy"]["identity_rand"]["bright"]
  assert set(per_attack) == {"clean", "pgd_defended", "bpda"}
  for attack, stats in per_attack.items():
    assert stats["draws"] == 3 and stats["n"] == 3
    assert stats["min"] <= stats["mean"] <= stats["max"]
  first = results["classifiers"]["bright"]["defenses"]["identity_rand"]["defense_clean"]
  assert per_attack["clean"]["min"] <= first <= per_attack["clean"]["max"]
  assert "identity" not in block["accuracy"]  # deterministic: one draw, no block
  markdown = reports.markdown_table(results)
  assert "## Randomized defenses (identity_rand: Gaussian noise sigma 0.02)" in markdown


def test_hopskipjump_through_the_evaluator():
  threat = evaluator_lib.ThreatModel.parse("hopskipjump", queries=1000, eps_l2="0.5")
  assert threat.params() == {"eps": 0.5, "norm": "l2", "queries": 1000, "access": "labels"}
  runner = evaluator_lib.Evaluator([_classifier()], {"identity": baselines.identity()},
                                   [threat])
  results = runner.run([_batch()])
  entry = results["attacks"]["hopskipjump"]["classifiers"]["bright"]
  # 0.52 is 0.02 * sqrt(192) = 0.28 (L2) from the boundary; 0.9 and 0.2 are > 5 away.
  assert entry["attack"] == pytest.approx(2 / 3)
  assert entry["defenses"]["identity"]["defense"] == pytest.approx(2 / 3)
  stats = results["attacks"]["hopskipjump"]["queries"]["bright"]["no_defense"]
  assert (stats["attacked"], stats["fooled"]) == (3, 1)
  assert stats["tied_proposals"] is None and stats["failure_rate"][-1][0] == 1000
  assert stats["median_successful"] < 1000 and stats["median_all"] == 1000  # up to success
  assert "(eps=0.5, norm=l2" in reports.markdown_table(results)
  assert results["classifiers"]["bright"]["worst_case"]["identity"]["attack"] == "hopskipjump"
