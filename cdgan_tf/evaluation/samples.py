"""The images of the sample grid: clean | adversarial | each stage of the defense."""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from cdgan_tf.data.batch import Batch
from cdgan_tf.defenses import base as defenses_base
from cdgan_tf.evaluation.evaluator import predict


def sample_columns(batch: Batch, purifier: Optional[defenses_base.Purifier], classifier,
                   count: int) -> Tuple[List[np.ndarray], List[str], List[List[str]]]:
  """Images and captions for the sample grid of one batch.

  The defense runs on the adversarial images when the batch has them, else on the
  clean ones; each of its stages (`Purifier.stages`: CD-GAN's after sub G / after
  super G) is a column.

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
  captions = [[f"pred {int(p[i])} (true {int(labels[i])})" for p in predictions]
              for i in range(len(labels))]
  return columns, titles, captions
