"""Tests of the Wilson interval and the exact McNemar test, by value."""

import math

import pytest

from cdgan_tf.evaluation import intervals


def test_wilson_of_50_in_100_is_the_textbook_value():
  # Textbook (Newcombe 1998, Brown-Cai-DasGupta 2001): 50/100 -> [0.4038, 0.5962].
  low, high = intervals.wilson(50, 100)
  assert low == pytest.approx(0.403832, abs=1e-6)
  assert high == pytest.approx(0.596168, abs=1e-6)


def test_wilson_by_hand_at_the_edges():
  # 0 of 10: low 0, high = z^2 / (n + z^2).
  z2 = intervals.Z95 ** 2
  assert intervals.wilson(0, 10) == (0.0, pytest.approx(z2 / (10 + z2)))
  low, high = intervals.wilson(10, 10)
  assert high == pytest.approx(1.0) and low == pytest.approx(10 / (10 + z2))
  assert intervals.wilson(0, 0) is None
  with pytest.raises(ValueError):
    intervals.wilson(11, 10)


def test_mcnemar_on_a_hand_table():
  # first right / second wrong: 2 images; the reverse: 8 (plus concordant ones).
  first = [True] * 5 + [True, True] + [False] * 8 + [False] * 3
  second = [True] * 5 + [False, False] + [True] * 8 + [False] * 3
  assert intervals.discordant(first, second) == (2, 8)
  # Hand: 2 * (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 2 * 56 / 1024.
  assert intervals.paired_p_value(first, second) == pytest.approx(112 / 1024)
  assert intervals.mcnemar_exact(8, 2) == intervals.mcnemar_exact(2, 8)
  assert intervals.mcnemar_exact(5, 5) == 1.0  # capped at 1
  assert intervals.mcnemar_exact(0, 0) == 1.0
  # 0 vs 6: 2 / 2^6.
  assert intervals.mcnemar_exact(0, 6) == pytest.approx(2 / 64)
  # Large counts stay exact (no overflow): 100 vs 200 is far below 1e-6.
  assert 0.0 < intervals.mcnemar_exact(100, 200) < 1e-6
  with pytest.raises(ValueError, match="different images"):
    intervals.discordant([True], [True, False])
  assert not math.isnan(intervals.mcnemar_exact(300, 300))
