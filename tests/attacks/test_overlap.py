"""overlap.read_ahead / overlap.Writer: order, look-ahead, inline mode, errors."""

import threading
import time

import pytest

from cdgan_tf.attacks import overlap


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_read_ahead_keeps_the_order_and_loads_ahead(depth):
  loaded_before_use, log = [], []

  def load(item):
    time.sleep(0.01 * (5 - item))  # Later items finish first on a pool.
    log.append(item)
    return item * 10

  got = []
  for item, value in overlap.read_ahead(range(5), load, depth, workers=2):
    loaded_before_use.append(len(log))
    got.append((item, value))
  assert got == [(i, 10 * i) for i in range(5)]
  if depth == 0:  # Inline: item i is loaded just before it is handed out.
    assert loaded_before_use == [1, 2, 3, 4, 5]
  else:  # depth items ahead were submitted before item 0 was handed out.
    assert loaded_before_use[0] >= 1 and len(log) == 5


def test_read_ahead_loads_on_another_thread_only_when_asked():
  threads = []
  for depth in (0, 2):
    list(overlap.read_ahead([1, 2], lambda _: threads.append(threading.get_ident()), depth))
  assert threads[:2] == [threading.get_ident()] * 2
  assert threading.get_ident() not in threads[2:]


def test_read_ahead_raises_a_load_error_in_the_caller():
  def load(item):
    if item == 2:
      raise OSError("unreadable 2")
    return item
  got = []
  with pytest.raises(OSError, match="unreadable 2"):
    for item, _ in overlap.read_ahead(range(5), load, depth=2):
      got.append(item)
  assert got == [0, 1]


@pytest.mark.parametrize("depth", [0, 1, 4])
def test_writer_runs_jobs_in_order_and_waits_on_close(depth):
  done = []

  def job(i):
    time.sleep(0.02 if i == 0 else 0.0)  # A slow first job may not be overtaken.
    done.append(i)

  with overlap.Writer(depth) as writer:
    for i in range(6):
      writer.submit(job, i)
      assert len(done) >= i + 1 - depth  # At most `depth` jobs left waiting.
  assert done == list(range(6))


def test_writer_raises_a_job_error_and_finishes_queued_jobs():
  done = []

  def job(i):
    if i == 1:
      raise OSError("disk full")
    done.append(i)

  submitted = []
  with pytest.raises(OSError, match="disk full"):
    with overlap.Writer(3) as writer:
      for i in range(6):
        writer.submit(job, i)  # Raises job 1's error once it is seen finished.
        submitted.append(i)
        time.sleep(0.01)
  assert 1 in submitted and submitted[-1] < 5  # Raised before the end of the loop.
  # Every job submitted ran, the failed one excepted.
  assert done == [i for i in submitted + [submitted[-1] + 1] if i != 1]
  # The caller's own error wins over a job's, and the queued jobs still run.
  done.clear()

  def slow_failing_job():
    time.sleep(0.05)
    raise OSError("disk full")

  with pytest.raises(KeyError):
    with overlap.Writer(3) as writer:
      writer.submit(slow_failing_job)
      writer.submit(job, 2)
      raise KeyError("attack failed")
  assert done == [2]


def test_bad_depths_are_refused():
  with pytest.raises(ValueError, match="depth=-1"):
    overlap.Writer(-1)
  with pytest.raises(ValueError, match="depth=-1"):
    list(overlap.read_ahead([1], lambda x: x, depth=-1))
