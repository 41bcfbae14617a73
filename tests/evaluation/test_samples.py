"""Tests of the sample grid's rows: the spread of classes and outcomes, class names."""

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.data.batch import Batch
from cdgan_tf.defenses import baselines
from cdgan_tf.evaluation import samples


def test_spread_rows_by_hand():
  # rows:       0  1  2  3  4  5  6  7  8  9
  labels = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
  correct = [1, 0, 1, 1, 1, 1, 0, 0, 1, 0]
  # Round 1: class 0 success (0), class 1 failure wanted, none -> success (3),
  # class 2 failure (6), class 3: 2 successes vs 1 failure -> failure (9).
  # Round 2: class 0: 2 vs 2 -> success (2), class 1 failure wanted -> success (4),
  # class 2 failure (7), class 3 failure wanted, none -> success (8).
  assert samples.spread_rows(labels, correct, 4) == [0, 3, 6, 9]
  assert samples.spread_rows(labels, correct, 8) == [0, 3, 6, 9, 2, 4, 7, 8]
  assert sorted(samples.spread_rows(labels, correct, 20)) == list(range(10))


def test_spread_rows_of_one_class_sorted_data_covers_classes_and_outcomes():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(10), 50)  # sorted class folders, as in the demo
  correct = rng.random(500) < 0.4
  rows = samples.spread_rows(labels, correct, 8)
  assert len(set(labels[rows])) == 8
  assert int(correct[rows].sum()) == 4
  with pytest.raises(ValueError, match="labels but"):
    samples.spread_rows([0, 1], [True], 1)


def test_captions_name_the_classes_and_rows_follow_the_order():
  images = tf.random.uniform((4, 8, 8, 3), seed=0).numpy()
  batch = Batch(labels=np.array([0, 1, 2, 1]), keys=list("abcd"), clean=images,
                adversarial=images[::-1].copy())
  picked = samples.take_rows(samples.join_batches([batch, batch]), [6, 1])
  assert list(picked.labels) == [2, 1] and picked.keys == ["c", "b"]
  np.testing.assert_array_equal(picked.adversarial[0], images[1])
  always_one = lambda x: tf.one_hot(tf.ones(tf.shape(x)[0], tf.int32), 3)  # noqa: E731
  identity = baselines.make_baseline("identity", image_size=8, scale=2)
  columns, titles, captions = samples.sample_columns(
      picked, identity, always_one, 2, class_names=["cat", "dog", "ship"])
  assert titles == ["clean", "adversarial", "adversarial purified"]
  assert captions[0] == ["pred dog (true ship)"] * 3
  assert captions[1] == ["pred dog (true dog)"] * 3
  assert samples.sample_columns(picked, None, always_one, 1)[2] == [["pred 1 (true 2)"] * 2]
