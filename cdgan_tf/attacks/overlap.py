"""Overlapping the pair generators' file work (decode, PNG encode, sidecar) with attacks.

The transfer-set and attack-mix generators spend most of a batch in the attack's
gradient steps (TensorFlow, which releases the GIL) and the rest decoding the clean
images and encoding the adversarial PNGs (PIL, which releases it too). Two helpers let
that file work run on threads while the attack runs:

  read_ahead(items, load, depth)   yields (item, load(item)) in order, loading up to
                                   `depth` items ahead on a thread pool
  Writer(depth)                    runs write jobs one at a time, in submission order,
                                   on one background thread (so a batch's PNGs are on
                                   disk before its sidecar records, as without it)

With depth=0 both run inline, in the caller's thread: the same jobs in the same order,
so a generator's outputs are byte-identical with and without overlap (the jobs neither
read nor change the attack's inputs, seeds or batching). A job's exception is raised in
the caller at the next submit / iteration or when the writer closes; closing always
waits for the jobs already submitted (a stopped or failed run keeps what it wrote).
"""

from __future__ import annotations

import collections
from concurrent import futures
from typing import Callable, Iterable, Iterator, Tuple, TypeVar

from cdgan_tf.common import errors

T = TypeVar("T")
R = TypeVar("R")


def read_ahead(items: Iterable[T], load: Callable[[T], R], depth: int = 2,
               workers: int = 1) -> Iterator[Tuple[T, R]]:
  """(item, load(item)) for every item, in order, loading up to `depth` items ahead.

  Args:
    items: What to load (consumed lazily).
    load: item -> loaded value; runs on `workers` threads when depth > 0.
    depth: Items loaded ahead of the one the caller works on; 0: load inline.
    workers: Threads of the loading pool.

  Yields:
    (item, loaded value), in the order of `items`; a load's exception is raised here.
  """
  if depth < 0 or workers < 1:
    raise errors.UsageError(f"depth={depth} must be >= 0 and workers={workers} >= 1")
  if depth == 0:
    for item in items:
      yield item, load(item)
    return
  iterator = iter(items)
  pending = collections.deque()
  pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read_ahead")
  try:
    for item in iterator:
      pending.append((item, pool.submit(load, item)))
      if len(pending) > depth:
        item, future = pending.popleft()
        yield item, future.result()
    while pending:
      item, future = pending.popleft()
      yield item, future.result()
  finally:  # Also when the caller stops early: loads not started are dropped.
    pool.shutdown(wait=True, cancel_futures=True)


class Writer:
  """Runs write jobs in submission order on one background thread (depth 0: inline).

  Use as a context manager; leaving it waits for every submitted job and raises the
  first job error not raised yet.

  Args:
    depth: Jobs that may wait unfinished; `submit` blocks on the oldest beyond that.
      0: every job runs inside `submit`.
  """

  def __init__(self, depth: int = 2):
    if depth < 0:
      raise errors.UsageError(f"depth={depth} must be >= 0")
    self.depth = depth
    self._pending = collections.deque()
    self._pool = (futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer")
                  if depth else None)

  def submit(self, job: Callable[..., object], *args, **kwargs) -> None:
    """Queues job(*args, **kwargs); raises the error of a finished earlier job."""
    if self._pool is None:
      job(*args, **kwargs)
      return
    self._pending.append(self._pool.submit(job, *args, **kwargs))
    while self._pending and (len(self._pending) > self.depth or self._pending[0].done()):
      self._pending.popleft().result()

  def close(self) -> None:
    """Waits for every submitted job; raises the first error among them."""
    error = None
    while self._pending:
      try:
        self._pending.popleft().result()
      except Exception as e:  # pylint: disable=broad-except
        error = error or e
    if self._pool is not None:
      self._pool.shutdown(wait=True)
    if error is not None:
      raise error

  def __enter__(self) -> "Writer":
    return self

  def __exit__(self, *exc_info) -> None:
    if exc_info[0] is None:
      self.close()
      return
    try:  # The caller's error wins; the jobs already queued still finish.
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass
