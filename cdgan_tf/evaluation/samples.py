"""The images of the sample grid: clean | adversarial | each stage of the defense.

`sample_columns` shows the first images of a batch; `spread_rows` picks rows worth
showing a newcomer first (`make demo`): a spread of classes, and both images the
defense gets right and images it gets wrong.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from cdgan_tf.common import errors
from cdgan_tf.data.batch import Batch
from cdgan_tf.defenses import base as defenses_base
from cdgan_tf.evaluation.evaluator import predict


def _name(label: int, class_names: Optional[Sequence[str]]) -> str:
  if class_names is not None and 0 <= label < len(class_names):
    return class_names[label]
  return str(label)


def sample_columns(batch: Batch, purifier: Optional[defenses_base.Purifier], classifier,
                   count: int, class_names: Optional[Sequence[str]] = None
                   ) -> Tuple[List[np.ndarray], List[str], List[List[str]]]:
  """Images and captions for the sample grid of one batch.

  The defense runs on the adversarial images when the batch has them, else on the
  clean ones; each of its stages (`Purifier.stages`: CD-GAN's after sub G / after
  super G) is a column.

  Args:
    class_names: Label -> name for the captions; default: the label numbers.

  Returns:
    (columns, titles, captions): columns are float32 arrays [count, H, W, 3] in [0, 1];
    captions[i][j] is "pred P (true L)" of `classifier` on image i of column j.
  """
  columns, titles = [], []
  labels = batch.labels[:count]
  for title, images in (("clean", batch.clean), ("adversarial", batch.adversarial)):
    if images is not None:
      columns.append(np.asarray(images[:count]))
      titles.append(title)
  if purifier is not None:
    source = "adversarial" if batch.adversarial is not None else "clean"
    inputs = batch.adversarial if batch.adversarial is not None else batch.clean
    for title, images in purifier.stages(inputs[:count]):
      columns.append(np.asarray(images))
      titles.append(f"{source} {title}")
  predictions = [predict(classifier, column) for column in columns]
  captions = [[f"pred {_name(int(p[i]), class_names)} "
               f"(true {_name(int(labels[i]), class_names)})" for p in predictions]
              for i in range(len(labels))]
  return columns, titles, captions


def spread_rows(labels: Sequence[int], correct: Sequence[bool], count: int) -> List[int]:
  """Up to `count` row indices: one class after another, successes and failures mixed.

  Round after round, every class (in label order) gives one image not yet taken:
  a success while fewer successes than failures are taken (ties: a success), else a
  failure; when the class has none of that kind left, one of the other kind. Within a
  kind, rows keep their order. Deterministic.

  Args:
    labels: int [N] true labels.
    correct: bool [N], whether the defended classifier got row i right.
    count: How many rows to pick.

  Returns:
    The row indices in the order picked (at most `count`, at most N).
  """
  labels, correct = np.asarray(labels), np.asarray(correct, bool)
  if labels.shape != correct.shape:
    raise errors.UsageError(f"{labels.shape[0]} labels but {correct.shape[0]} correct flags")
  pools = {(int(c), bool(k)): [int(i) for i in np.flatnonzero((labels == c) & (correct == k))]
           for c in np.unique(labels) for k in (True, False)}
  classes = [int(c) for c in np.unique(labels)]
  picked, successes = [], 0
  while len(picked) < min(count, len(labels)):
    for c in classes:
      if len(picked) == count:
        break
      want = successes <= len(picked) - successes
      pool = pools[(c, want)] or pools[(c, not want)]
      if pool:
        row = pool.pop(0)
        picked.append(row)
        successes += int(correct[row])
  return picked


def take_rows(batch: Batch, rows: Sequence[int]) -> Batch:
  """The batch of the given rows, in that order."""
  rows = list(rows)
  pick = lambda a: None if a is None else np.asarray(a)[rows]  # noqa: E731
  return Batch(labels=np.asarray(batch.labels)[rows], keys=[batch.keys[i] for i in rows],
               clean=pick(batch.clean), adversarial=pick(batch.adversarial))


def join_batches(batches: Sequence[Batch]) -> Batch:
  """The batches as one (every batch with the same fields and image size)."""
  cat = lambda field: (None if getattr(batches[0], field) is None else  # noqa: E731
                       np.concatenate([getattr(b, field) for b in batches]))
  return Batch(labels=cat("labels"), keys=[k for b in batches for k in b.keys],
               clean=cat("clean"), adversarial=cat("adversarial"))
