"""HopSkipJump on a model with a known linear decision boundary."""

import numpy as np
import pytest

from cdgan_tf.attacks import hopskipjump as hsj

SHAPE = (8, 8, 3)


def _linear_problem():
  """Label 1 iff <w, x> + b > 0; images near 0.5, each at a known distance."""
  rng = np.random.default_rng(0)
  w = rng.normal(size=SHAPE)
  images = np.clip(0.5 + rng.normal(0, 0.05, (4,) + SHAPE), 0, 1).astype(np.float32)
  b = -np.tensordot(images.astype(np.float64), w, axes=3).mean()
  calls = []

  def labels_fn(x):
    calls.append(len(x))
    return (np.tensordot(np.asarray(x, np.float64), w, axes=3) + b > 0).astype(int)

  margin = np.abs(np.tensordot(images.astype(np.float64), w, axes=3) + b)
  true = {"l2": margin / np.linalg.norm(w), "linf": margin / np.abs(w).sum()}
  return labels_fn, images, labels_fn(images), true, calls


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_flips_the_label_and_approaches_the_true_distance(norm):
  labels_fn, images, labels, true, _ = _linear_problem()
  distances = []
  for budget in (200, 1000, 3000):
    result = hsj.hopskipjump(labels_fn, images, labels, eps=10.0, norm=norm,
                             queries=budget, seed=0)
    assert np.all(result.fooled)
    assert np.all(labels_fn(result.adversarial) != labels)  # the returned points flip
    found = np.array([hsj.distance(a, x, norm) for a, x in zip(result.adversarial, images)])
    np.testing.assert_allclose(found, result.distances, rtol=1e-4)
    assert np.all(found >= true[norm] * (1 - 1e-3))  # nothing beats the true distance
    distances.append(found / true[norm])
  ratios = np.array(distances)
  assert np.all(ratios[2] <= ratios[0])  # more queries, closer
  assert np.all(ratios[2] < 1.3)  # measured: 1.07-1.27 at 3,000 queries


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_never_exceeds_the_budget_and_respects_eps(norm):
  labels_fn, images, labels, true, calls = _linear_problem()
  eps = float(np.median(true[norm])) * 1.5
  for budget in (1, 2, 7, 150):
    calls.clear()
    result = hsj.hopskipjump(labels_fn, images, labels, eps=eps, norm=norm, queries=budget,
                             seed=1, chunk=64)
    assert np.all(result.queries <= budget) and np.all(result.queries >= 1)
    assert sum(calls) == result.queries.sum()  # every query counted, none hidden
    assert max(calls) <= 64
    for adv, x, fooled in zip(result.adversarial, images, result.fooled):
      assert hsj.distance(adv, x, norm) <= eps + 1e-6
      if not fooled:
        np.testing.assert_array_equal(adv, x)  # no point within eps: the clean image
    assert np.all(result.fooled_at <= result.queries)
  assert 0 < np.sum(result.fooled) < len(images)  # the budget decides


def test_misclassified_and_unlabelled_images_cost_one_query():
  labels_fn, images, labels, _, calls = _linear_problem()
  wrong = labels.copy()
  wrong[0] = 1 - wrong[0]
  wrong[1] = -1
  result = hsj.hopskipjump(labels_fn, images, wrong, eps=1.0, queries=50, seed=0)
  assert result.queries[0] == 1 and result.fooled_at[0] == 1 and result.distances[0] == 0
  assert result.queries[1] == 1 and result.fooled_at[1] == 0
  np.testing.assert_array_equal(result.adversarial[:2], images[:2])


def test_seeded():
  labels_fn, images, labels, _, _ = _linear_problem()
  a = hsj.hopskipjump(labels_fn, images, labels, eps=1.0, queries=300, seed=3)
  b = hsj.hopskipjump(labels_fn, images, labels, eps=1.0, queries=300, seed=3)
  np.testing.assert_array_equal(a.adversarial, b.adversarial)
  c = hsj.hopskipjump(labels_fn, images, labels, eps=1.0, queries=300, seed=4)
  assert not np.array_equal(a.distances, c.distances)


def test_bad_arguments():
  labels_fn, images, labels, _, _ = _linear_problem()
  with pytest.raises(ValueError, match="norm"):
    hsj.hopskipjump(labels_fn, images, labels, 1.0, norm="l1")
  with pytest.raises(ValueError, match="queries"):
    hsj.hopskipjump(labels_fn, images, labels, 1.0, queries=0)


def test_a_stop_request_abandons_the_batch_before_the_next_round():
  labels_fn, images, labels, _, calls = _linear_problem()
  rounds = []

  def should_stop():
    rounds.append(len(calls))
    return len(rounds) > 3

  with pytest.raises(hsj.interrupts.Abandoned, match="hopskipjump: 4 of 4 images running"):
    hsj.hopskipjump(labels_fn, images, labels, 0.0, norm="l2", queries=500, seed=0,
                    should_stop=should_stop)
  assert len(calls) == rounds[-1] and len(rounds) == 4  # no query after the stop
