"""Tests of the Square attack: budget, bound, and flips on a known decision boundary."""

import numpy as np
import pytest

from cdgan_tf.attacks import square


class _MeanBrightness:
  """Class 1 iff the mean pixel is above 0.5: logits [0, 100 * (mean - 0.5)].

  Counts every image it scores (the attack's queries).
  """

  def __init__(self):
    self.rows = 0

  def __call__(self, images):
    images = np.asarray(images)
    self.rows += len(images)
    mean = images.mean(axis=(1, 2, 3))
    return np.stack([np.zeros_like(mean), 100.0 * (mean - 0.5)], axis=1)


def _images(means, side=8):
  rng = np.random.default_rng(0)
  noise = rng.uniform(-0.1, 0.1, size=[len(means), side, side, 3])
  noise -= noise.mean(axis=(1, 2, 3), keepdims=True)
  return np.clip(np.asarray(means)[:, None, None, None] + noise, 0, 1).astype(np.float32)


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_flips_near_the_boundary_and_respects_budget_and_bound(norm, eps):
  model = _MeanBrightness()
  # Image 0: mean 0.51 (flippable: L-inf needs 0.01 < 8/255; L2 needs 0.01 * sqrt(192)
  # = 0.14 < 0.5). Image 1: mean 0.9 (unreachable). Image 2: already wrong (label 0).
  images = _images([0.51, 0.9, 0.7])
  labels = np.array([1, 1, 0])
  result = square.square_attack(model, images, labels, eps, norm=norm, queries=200, seed=1)
  assert model.rows == int(result.queries.sum())  # every query is counted ...
  assert result.queries.max() <= 200  # ... and none leaves the budget
  assert result.queries[1] == 200 and result.fooled_at[1] == 0  # never flips
  assert result.queries[2] == 1 and result.fooled_at[2] == 1  # wrong from the start
  assert 2 <= result.fooled_at[0] <= 200 and result.queries[0] == result.fooled_at[0]
  assert np.argmax(model(result.adversarial[:1]), axis=1)[0] == 0  # flipped
  diff = result.adversarial.astype(np.float64) - images
  if norm == "linf":
    assert np.abs(diff).max() <= eps + 1e-6
  else:
    assert np.sqrt((diff ** 2).sum(axis=(1, 2, 3))).max() <= eps + 1e-5
  assert result.adversarial.min() >= 0.0 and result.adversarial.max() <= 1.0
  np.testing.assert_array_equal(result.adversarial[2], images[2])
  stats = square.query_stats(result, labels)
  assert stats["attacked"] == 2 and stats["fooled"] == 1
  assert stats["median_successful"] == result.queries[0]
  assert square.failure_curve(result, labels, [1, 200]) == [[1, 1.0], [200, 0.5]]


def test_seeded_and_lowering_the_margin():
  images = _images([0.55, 0.56])
  labels = np.array([1, 1])
  first = square.square_attack(_MeanBrightness(), images, labels, 0.02, queries=100, seed=3)
  again = square.square_attack(_MeanBrightness(), images, labels, 0.02, queries=100, seed=3)
  np.testing.assert_array_equal(first.adversarial, again.adversarial)
  # Unreachable at 0.02 (needs 0.05): the random search still lowers the mean.
  before = images.mean(axis=(1, 2, 3))
  after = first.adversarial.mean(axis=(1, 2, 3))
  assert np.all(after < before - 0.002)
  assert np.all(first.margins == pytest.approx(100 * (after - 0.5), abs=1e-3))


def test_p_selection_schedule_and_errors():
  assert square.p_selection(0.05, 0, 1000) == 0.05
  assert square.p_selection(0.05, 30, 10000) == 0.025
  assert square.p_selection(0.05, 999, 1000) == 0.05 / 512
  with pytest.raises(ValueError, match="norm"):
    square.square_attack(_MeanBrightness(), _images([0.5]), [1], 0.1, norm="l1")
  with pytest.raises(ValueError, match="queries"):
    square.square_attack(_MeanBrightness(), _images([0.5]), [1], 0.1, queries=0)
  bump = square.pseudo_gaussian(5, np.random.default_rng(0))
  assert np.sum(bump ** 2) == pytest.approx(1.0)


def test_quantized_scores_tie_and_ties_can_be_accepted():
  """Scores in 1/4 steps of the mean: most proposals leave the margin unchanged."""
  def coarse(images):
    mean = np.floor(np.asarray(images).mean(axis=(1, 2, 3)) * 4) / 4
    return np.stack([np.full_like(mean, 0.5), mean], axis=1)
  images = _images([0.8])
  strict = square.square_attack(coarse, images, [1], 0.02, queries=50, seed=0)
  assert strict.ties[0] == 49  # the start and all 48 proposals tie the clean margin ...
  np.testing.assert_array_equal(strict.adversarial, images)  # ... it never moves
  walking = square.square_attack(coarse, images, [1], 0.02, queries=50, seed=0,
                                 accept_ties=True)
  assert np.abs(walking.adversarial - images).max() > 0  # the walk moves on plateaus


def test_small_budgets_follow_the_papers_10000_query_schedule(monkeypatch):
  spans = set()
  original = square.p_selection
  def recording(p_init, iteration, iterations):
    spans.add(iterations)
    return original(p_init, iteration, iterations)
  monkeypatch.setattr(square, "p_selection", recording)
  images, labels = _images([0.9]), [1]  # never flips: every iteration runs
  square.square_attack(_MeanBrightness(), images, labels, 0.02, queries=20)
  assert spans == {10000}
  spans.clear()
  square.square_attack(_MeanBrightness(), images, labels, 0.02, queries=20, schedule=None)
  assert spans == {18}  # the reference code's rescaling to the budget


def test_a_stop_request_abandons_the_batch_at_the_next_query():
  model = _MeanBrightness()
  polls = []

  def should_stop():
    polls.append(model.rows)
    return len(polls) > 5  # The sixth poll asks to stop.

  images, labels = _images([0.9, 0.95]), np.array([1, 1])  # Never flip: all 200 queries.
  with pytest.raises(square.interrupts.Abandoned, match="query 8 of 200"):
    square.square_attack(model, images, labels, 8 / 255, queries=200, seed=0,
                         should_stop=should_stop)
  # Clean + start + 5 proposals for each of the 2 images, then nothing more.
  assert model.rows == 2 * (2 + 5) and polls[-1] == model.rows
  never = square.square_attack(_MeanBrightness(), images, labels, 8 / 255, queries=20,
                               should_stop=lambda: False)
  assert never.queries.tolist() == [20, 20]
