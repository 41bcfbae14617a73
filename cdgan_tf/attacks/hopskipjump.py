"""HopSkipJump: a decision-based black-box attack (label-only access), L2 and L-inf.

Chen, Jordan & Wainwright, "HopSkipJumpAttack: a query-efficient decision-based
attack", IEEE S&P 2020 (the reference code's defaults: 100 gradient samples at the first
iteration, times sqrt(t) after, gamma 1, geometric step search). The attacker sees only
the predicted label, never a score or gradient, so it runs against anything that
returns a class: TFLite interpreters, exported SavedModels, randomized purifiers.

Per image:
  1. query the clean image (query 1); if it is already misclassified it is returned;
  2. uniform random images until one is misclassified (at most `init_tries`), then a
     binary search towards the clean image onto the decision boundary;
  3. repeat: estimate the boundary's normal at the current boundary point from the
     labels of n_t random perturbations of it (Monte-Carlo, with a baseline), step
     along it (L2: the unit normal; L-inf: its sign) with a geometric step search
     until the step lands adversarial, binary search back to the boundary.
The distance to the clean image (L2 or L-inf on the [0, 1] scale) shrinks; every point
kept as "best" was queried and found misclassified.

Query accounting: one query = one image classified once, counted per image; an image
never gets more than `queries`. The images are attacked together: their pending queries
are classified in batches of at most `chunk` images. "Fooled at a budget eps" means a
verified misclassified point within distance eps; `fooled_at` is the query count when
the first such point was found (1: misclassified clean, 0: never), and the returned
`adversarial` is that best point when its distance is <= eps, else the clean image, so
scoring the returned images never exceeds the budget.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterator, List, Optional

from absl import logging
import numpy as np

from cdgan_tf.common import errors
from cdgan_tf.common import interrupts

LabelsFn = Callable[[np.ndarray], np.ndarray]
NORMS = ("l2", "linf")
DEFAULT_QUERIES = 1000


class _OutOfQueries(Exception):
  pass


@dataclasses.dataclass
class HopSkipJumpResult:
  """What one run returns (the fields `square.SquareResult` has, plus distances).

  Attributes:
    adversarial: float32 [N, H, W, C] in [0, 1]: the best point within eps, else the
      clean image.
    queries: int [N], 1 <= queries <= budget.
    fooled_at: int [N], the query of the first verified point within eps (0: none).
    distances: float [N] distance of the best misclassified point found (inf: none;
      0 for images misclassified clean).
    ties: always None (labels have no ties to count).
  """
  adversarial: np.ndarray
  queries: np.ndarray
  fooled_at: np.ndarray
  distances: np.ndarray
  ties: None = None

  @property
  def fooled(self) -> np.ndarray:
    return self.fooled_at > 0


def distance(a: np.ndarray, b: np.ndarray, norm: str) -> float:
  """L2 or L-inf distance of two images (float64)."""
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  return float(np.sqrt(np.sum(d * d)) if norm == "l2" else np.max(np.abs(d)))


class _Run:
  """The attack on one image, as a generator of query batches (see `_steps`)."""

  def __init__(self, clean, label, eps, norm, budget, rng, init_evals, max_evals,
               gamma, init_tries):
    self.x = np.asarray(clean, np.float64)
    self.label, self.eps, self.norm, self.budget, self.rng = label, eps, norm, budget, rng
    self.init_evals, self.max_evals, self.init_tries = init_evals, max_evals, init_tries
    d = self.x.size
    self.theta = gamma / (d * np.sqrt(d)) if norm == "l2" else gamma / d ** 2
    self.queries = 0
    self.fooled_at = 0
    self.best = None
    self.dist = np.inf

  def _ask(self, points: np.ndarray):
    """Classifies up to the remaining budget of `points`: bool [k] adversarial."""
    k = min(len(points), self.budget - self.queries)
    if k <= 0:
      raise _OutOfQueries()
    adversarial = yield np.clip(points[:k], 0.0, 1.0)
    self.queries += k
    return np.asarray(adversarial[:k], bool)

  def _keep(self, point: np.ndarray) -> None:
    """Records a verified misclassified point if it is the closest so far."""
    dist = distance(point, self.x, self.norm)
    if dist < self.dist:
      self.best, self.dist = point, dist
      if dist <= self.eps and not self.fooled_at:
        self.fooled_at = self.queries

  def steps(self) -> Iterator[np.ndarray]:
    try:
      yield from self._steps()
    except _OutOfQueries:
      return

  def _steps(self):
    if (yield from self._ask(self.x[None]))[0]:
      self.best, self.dist, self.fooled_at = self.x, 0.0, self.queries
      return
    start = None
    for _ in range(self.init_tries):
      noise = self.rng.uniform(0.0, 1.0, self.x.shape)
      if (yield from self._ask(noise[None]))[0]:
        start = noise
        break
    if start is None:
      return
    self._keep(start)
    boundary = yield from self._binary_search(start)
    t = 0
    while True:
      t += 1
      delta = (0.1 if t == 1 else
               (np.sqrt(self.x.size) if self.norm == "l2" else self.x.size)
               * self.theta * self.dist)
      evals = int(min(self.init_evals * np.sqrt(t), self.max_evals))
      normal = yield from self._estimate_normal(boundary, evals, delta)
      update = normal if self.norm == "l2" else np.sign(normal)
      step = self.dist / np.sqrt(t)
      while True:  # geometric step search: halve until the step lands adversarial
        candidate = np.clip(boundary + step * update, 0.0, 1.0)
        if (yield from self._ask(candidate[None]))[0]:
          break
        step /= 2.0
        if step < 1e-12:
          return
      self._keep(candidate)
      boundary = yield from self._binary_search(candidate)

  def _binary_search(self, adversarial: np.ndarray):
    """The boundary point between the clean image and a misclassified one.

    L2: blends (1 - a) x + a x_adv; L-inf: clips x_adv into the L-inf ball of radius a.
    Stops at the paper's threshold (theta, L-inf: min(theta * dist, theta)). The point
    returned (the 'high' side) was verified misclassified.
    """
    if self.norm == "l2":
      low, high, threshold = 0.0, 1.0, self.theta
      make = lambda a: (1.0 - a) * self.x + a * adversarial  # noqa: E731
    else:
      low, high = 0.0, distance(adversarial, self.x, "linf")
      threshold = min(self.theta * high, self.theta)
      make = lambda a: np.clip(adversarial, self.x - a, self.x + a)  # noqa: E731
    while high - low > threshold:
      mid = (low + high) / 2.0
      if (yield from self._ask(make(mid)[None]))[0]:
        high = mid
        self._keep(make(high))
      else:
        low = mid
    return make(high)

  def _estimate_normal(self, boundary: np.ndarray, evals: int, delta: float):
    """Monte-Carlo estimate of the boundary's normal (unit L2 norm) at `boundary`."""
    shape = (evals,) + self.x.shape
    # float32: 100 directions of a 224 x 224 image are 60 MB per image, not 120.
    if self.norm == "l2":
      directions = self.rng.standard_normal(shape, dtype=np.float32)
    else:
      directions = self.rng.uniform(-1.0, 1.0, shape).astype(np.float32)
    axes = tuple(range(1, directions.ndim))
    directions /= np.sqrt(np.sum(directions ** 2, axis=axes, keepdims=True))
    perturbed = np.clip(boundary.astype(np.float32) + np.float32(delta) * directions, 0.0, 1.0)
    directions = (perturbed - boundary.astype(np.float32)) / np.float32(delta)
    decisions = yield from self._ask(perturbed)
    directions = directions[:len(decisions)]
    signs = 2.0 * decisions - 1.0
    if np.all(signs == signs[0]):
      weights = signs
    else:
      weights = signs - np.mean(signs)
    normal = np.tensordot(weights, directions, axes=1) / len(signs)
    return normal / max(np.sqrt(np.sum(normal ** 2)), 1e-20)


def _classify(requests: List[np.ndarray], labels_fn: LabelsFn, chunk: int):
  """Labels of every request's points, in chunks of at most `chunk` images.

  Never copies all requests into one array (34 requests of 100 ImageNet images each
  were 2 GB as one float32 array; with float64 copies the process ran out of memory).
  """
  pieces, sizes = [], []
  for points in requests:
    for s in range(0, len(points), chunk):
      pieces.append(points[s:s + chunk])
    sizes.append(len(points))
  labels, batch, count = [], [], 0
  for piece in pieces + [None]:
    if piece is None or count + len(piece) > chunk:
      if batch:
        labels.append(np.asarray(labels_fn(np.concatenate(batch).astype(np.float32)))
                      .reshape(-1))
      batch, count = [], 0
    if piece is not None:
      batch.append(piece)
      count += len(piece)
  flat = np.concatenate(labels) if labels else np.zeros([0], np.int64)
  return np.split(flat, np.cumsum(sizes)[:-1])


def hopskipjump(labels_fn: LabelsFn, images, labels, eps: float, norm: str = "l2",
                queries: int = DEFAULT_QUERIES, seed: int = 0, init_evals: int = 100,
                max_evals: int = 10000, gamma: float = 1.0, init_tries: int = 100,
                chunk: int = 256, name: str = "hopskipjump",
                log_every: float = 30.0,
                should_stop: Optional[Callable[[], bool]] = None) -> HopSkipJumpResult:
  """Runs HopSkipJump (untargeted) on a batch, label-only.

  Args:
    labels_fn: float32 [n, H, W, C] in [0, 1] -> int [n] predicted labels (n <= chunk).
    images: float [N, H, W, C] in [0, 1], the clean images.
    labels: int [N] true labels; images with a label < 0 are not attacked (1 query).
    eps: The budget at which an image counts as fooled (L2 or L-inf, [0, 1] scale).
    norm: "l2" or "linf".
    queries: Per-image query budget (>= 1), the clean query included.
    seed: Seed of the random starts and directions (one stream per image).
    init_evals, max_evals, gamma, init_tries: The paper's parameters (see module).
    chunk: Most images per `labels_fn` call.
    name: For the progress line.
    log_every: Seconds between progress lines.
    should_stop: Polled before every round of queries; when it returns true the batch
      is given up (`interrupts.Abandoned`).

  Returns:
    A `HopSkipJumpResult`.

  Raises:
    interrupts.Abandoned: `should_stop` returned true.
  """
  if norm not in NORMS:
    raise errors.UsageError(f"norm={norm!r}: use one of {', '.join(NORMS)}")
  if int(queries) < 1:
    raise errors.UsageError(f"queries={queries} must be >= 1")
  if not np.isfinite(eps) or eps < 0:
    raise errors.UsageError(f"eps={eps} must be a finite number >= 0")
  images = np.asarray(images, np.float32)
  labels = np.asarray(labels).reshape(-1)
  if images.ndim != 4 or len(labels) != len(images):
    raise errors.UsageError(f"images must be [N, H, W, C] with one label each, got "
                     f"{images.shape} and {labels.shape}")
  runs = [_Run(x, int(y), float(eps), norm, int(queries), np.random.default_rng([seed, i]),
               init_evals, max_evals, gamma, init_tries)
          for i, (x, y) in enumerate(zip(images, labels))]
  pending = {}
  generators = {}
  for i, run in enumerate(runs):
    if labels[i] < 0:
      run.queries = 1
      continue
    generators[i] = run.steps()
    pending[i] = next(generators[i], None)
  pending = {i: p for i, p in pending.items() if p is not None}
  started = last = time.time()
  while pending:
    interrupts.check(should_stop, f"{name}: {len(pending)} of {len(runs)} images running")
    order = list(pending)
    predicted = _classify([pending[i] for i in order], labels_fn, chunk)
    for i, predictions in zip(order, predicted):
      decisions = predictions != labels[i]
      try:
        pending[i] = generators[i].send(decisions)
      except StopIteration:
        del pending[i]
    if time.time() - last > log_every:
      last = time.time()
      logging.info("%s: %d of %d images still running, %.0f queries used on average, "
                   "%d fooled within eps (%.0f s)", name, len(pending), len(runs),
                   np.mean([r.queries for r in runs]),
                   sum(r.fooled_at > 0 for r in runs), last - started)
  adversarial = np.stack([r.best.astype(np.float32) if r.fooled_at else r.x.astype(
      np.float32) for r in runs]) if runs else images.copy()
  return HopSkipJumpResult(
      adversarial=adversarial, queries=np.array([r.queries for r in runs], np.int64),
      fooled_at=np.array([r.fooled_at for r in runs], np.int64),
      distances=np.array([r.dist for r in runs], np.float64))
