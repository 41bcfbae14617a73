"""Square attack: a score-based black-box attack (L-inf and L2), scores only.

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020. The attacker sees only the model's
output scores (logits, log-probabilities or probabilities: any monotone per-class
score), never a gradient, so it runs against TFLite interpreters, exported SavedModels
and any purifier in front of a classifier.

Each iteration proposes one random square-shaped change of the current best
perturbation (L-inf: the square is set to +-eps per channel; L2: a pseudo-Gaussian
bump that moves mass out of a second square) and keeps it when the margin loss
`score[y] - max_{j != y} score[j]` decreases. The square's side shrinks on the paper's
schedule (rescaled to the query budget). As in the paper's reference code, the
starting point is vertical stripes of +-eps (L-inf) or a grid of pseudo-Gaussian
bumps (L2).

Query accounting: one query = one image scored once. Query 1 is the clean image (an
image the model already gets wrong costs 1 and is returned unchanged), query 2 the
starting point, then one per iteration, only for the images not yet misclassified. No
image is ever scored more than `queries` times. "Misclassified" is
`argmax(scores) != label`, with the argmax's tie rule (first index), exactly as the
evaluation predicts: with quantized classifiers (scores in 1/256 steps) a tie of the
true class with another one counts as correct when the true class comes first.

The perturbation bound holds exactly after clipping to [0, 1]: L-inf
max |x_adv - x| <= eps, L2 per-image ||x_adv - x||_2 <= eps (up to float32 rounding).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

from absl import logging
import numpy as np

from cdgan_tf.common import errors
from cdgan_tf.common import interrupts

ScoresFn = Callable[[np.ndarray], np.ndarray]
NORMS = ("linf", "l2")
DEFAULT_P_INIT = {"linf": 0.05, "l2": 0.1}  # The paper's ImageNet settings.
DEFAULT_QUERIES = 1000
# The paper's schedule is defined for 10,000 iterations. Rescaling it to a small budget
# (as the reference code does) shrinks the squares within a few queries: measured on the
# quantized MobileNet-v2, 20 ImageNet images, 200 queries, 8/255: 3 of 17 fooled
# rescaled vs 12 of 17 with the schedule of 10,000. Budgets below it use it unscaled,
# i.e. the attack's first N queries are those of the paper's 10,000-query run.
SCHEDULE_ITERATIONS = 10000


@dataclasses.dataclass
class SquareResult:
  """What one run of the attack returns.

  Attributes:
    adversarial: float32 [N, H, W, C] in [0, 1]: the best image found per input (the
      clean image for inputs misclassified from the start).
    queries: int [N] images scored per input (1 <= queries <= budget).
    fooled_at: int [N]: the query count at which the input was first misclassified (1:
      already misclassified clean), 0 if it never was.
    margins: float [N] final margin loss (<= 0 usually means misclassified).
    ties: int [N] proposals whose margin equalled the best one exactly (quantized
      scores: the change was below one score step); None when not counted.
  """
  adversarial: np.ndarray
  queries: np.ndarray
  fooled_at: np.ndarray
  margins: np.ndarray
  ties: Optional[np.ndarray] = None

  @property
  def fooled(self) -> np.ndarray:
    """bool [N]: misclassified within the budget."""
    return self.fooled_at > 0


def _margins(scores: np.ndarray, labels: np.ndarray):
  """(margin loss [n], misclassified bool [n]) of scores [n, K] against labels [n]."""
  scores = np.asarray(scores, np.float64)
  rows = np.arange(len(labels))
  true = scores[rows, labels]
  others = scores.copy()
  others[rows, labels] = -np.inf
  return true - others.max(axis=1), np.argmax(scores, axis=1) != labels


def p_selection(p_init: float, iteration: int, iterations: int) -> float:
  """The fraction of pixels the square covers at `iteration` (the paper's schedule).

  The schedule is defined for 10,000 iterations and rescaled to `iterations`: p_init up
  to 10, then halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000.
  """
  it = int(iteration / max(iterations, 1) * 10000)
  for bound, divisor in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32),
                         (4000, 64), (6000, 128), (8000, 256)):
    if it <= bound:
      return p_init / divisor
  return p_init / 512


def _pseudo_gaussian_rectangle(x: int, y: int) -> np.ndarray:
  delta = np.zeros([x, y])
  x_c, y_c = x // 2 + 1, y // 2 + 1
  corner = [x_c - 1, y_c - 1]
  for counter in range(max(x_c, y_c)):
    delta[max(corner[0], 0):min(corner[0] + 2 * counter + 1, x),
          max(0, corner[1]):min(corner[1] + 2 * counter + 1, y)] += 1.0 / (counter + 1) ** 2
    corner[0] -= 1
    corner[1] -= 1
  norm = np.sqrt(np.sum(delta ** 2))
  return delta / norm if norm > 0 else delta


def pseudo_gaussian(s: int, rng: np.random.Generator) -> np.ndarray:
  """The L2 attack's s x s update: two opposite-signed bumps, unit L2 norm: [s, s]."""
  delta = np.zeros([s, s])
  delta[:s // 2] = _pseudo_gaussian_rectangle(s // 2, s)
  delta[s // 2:] = -_pseudo_gaussian_rectangle(s - s // 2, s)
  delta /= np.sqrt(np.sum(delta ** 2))
  return delta.T if rng.random() > 0.5 else delta


def _l2(x: np.ndarray) -> np.ndarray:
  return np.sqrt(np.sum(x ** 2, axis=(1, 2, 3), keepdims=True))


class _Progress:
  """A log line every `every` seconds: iteration, images left, ETA."""

  def __init__(self, name: str, total: int, every: float = 30.0):
    self.name, self.total, self.every = name, total, every
    self.start = self.last = time.time()

  def __call__(self, iteration: int, active: int, count: int) -> None:
    now = time.time()
    if now - self.last < self.every:
      return
    self.last = now
    eta = (now - self.start) / max(iteration, 1) * (self.total - iteration)
    logging.info("%s: query %d/%d, %d of %d images still correct, ETA %.0f s",
                 self.name, iteration, self.total, active, count, eta)


def square_attack(scores_fn: ScoresFn, images, labels, eps: float, norm: str = "linf",
                  queries: int = DEFAULT_QUERIES, p_init: Optional[float] = None,
                  seed: int = 0, name: str = "square",
                  accept_ties: bool = False,
                  schedule: Optional[int] = SCHEDULE_ITERATIONS,
                  should_stop: Optional[Callable[[], bool]] = None) -> SquareResult:
  """Runs the untargeted Square attack on a batch.

  Args:
    scores_fn: float32 [n, H, W, C] in [0, 1] -> scores [n, K] (numpy or tensors; any
      n from 1 to N: only the images still correct are scored).
    images: float32 [N, H, W, C] in [0, 1].
    labels: int [N] true labels; entries < 0 are not attacked (1 query each).
    eps: Budget: L-inf in [0, 1], or the L2 norm on the [0, 1] scale.
    norm: "linf" or "l2".
    queries: Most images scored per input (>= 1), the clean one included.
    p_init: Initial fraction of pixels changed per iteration (default: 0.05 L-inf,
      0.1 L2).
    seed: Seed of the random search.
    name: Label of the progress lines.
    accept_ties: Also keep proposals that leave the margin unchanged (the paper keeps
      strict improvements only); lets the search walk across the flat steps of a
      quantized classifier's scores.
    schedule: Iterations the square-size schedule spans: max(budget, schedule); None:
      the budget (the reference code's rescaling).
    should_stop: Polled before every query; when it returns true the batch is given up
      (`interrupts.Abandoned`): a stopped search's images would count as unbroken.

  Returns:
    A `SquareResult`.

  Raises:
    ValueError: bad images, labels, norm, eps or budget.
    interrupts.Abandoned: `should_stop` returned true.
  """
  if norm not in NORMS:
    raise errors.UsageError(f"norm={norm!r}: use one of {', '.join(NORMS)}")
  x = np.asarray(images, np.float32)
  y = np.asarray(labels).astype(np.int64).reshape(-1)
  if x.ndim != 4 or len(x) != len(y):
    raise errors.UsageError(f"images [N, H, W, C] and labels [N] needed, got {x.shape}, {y.shape}")
  if x.size and (x.min() < 0.0 or x.max() > 1.0):
    raise errors.UsageError("images must be in [0, 1]")
  if not eps >= 0 or (norm == "linf" and eps > 1.0):
    raise errors.UsageError(f"eps={eps} out of range for norm {norm}")
  if int(queries) < 1:
    raise errors.UsageError(f"queries={queries} must be >= 1")
  queries = int(queries)
  p_init = DEFAULT_P_INIT[norm] if p_init is None else float(p_init)
  rng = np.random.default_rng(seed)
  n, h, w, c = x.shape
  score = lambda batch: np.asarray(scores_fn(batch.astype(np.float32)))  # noqa: E731
  used = np.zeros(n, np.int64)
  fooled_at = np.zeros(n, np.int64)
  best = x.copy()
  known = y >= 0
  margin = np.full(n, np.inf)
  ties = np.zeros(n, np.int64)
  if n == 0:
    return SquareResult(best, used, fooled_at, margin, ties)
  # Query 1: the clean images.
  margin[:], wrong = _margins(score(x), np.maximum(y, 0))
  used[:] = 1
  fooled_at[wrong & known] = 1
  active = np.flatnonzero(~wrong & known)
  if queries == 1 or not active.size:
    return SquareResult(best, used, fooled_at, margin, ties)
  # Query 2: the starting point.
  if norm == "linf":
    start = x + eps * rng.choice([-1.0, 1.0], size=[n, 1, w, c])
  else:
    start = x + _l2_start(x.shape, rng) * eps
  start = np.clip(start, 0.0, 1.0)
  step_margin, step_wrong = _margins(score(start[active]), y[active])
  _accept(active, step_margin, step_wrong, start[active], best, margin, fooled_at, used, 2,
          ties, accept_ties)
  progress = _Progress(name, queries)
  span = max(queries - 2, schedule or 0)
  for iteration in range(queries - 2):
    active = active[fooled_at[active] == 0]
    if not active.size:
      break
    interrupts.check(should_stop, f"{name}: query {iteration + 3} of {queries}")
    p = p_selection(p_init, iteration, span)
    if norm == "linf":
      proposal = _linf_proposal(x[active], best[active], eps, p, rng)
    else:
      proposal = _l2_proposal(x[active], best[active], eps, p, rng)
    step_margin, step_wrong = _margins(score(proposal), y[active])
    _accept(active, step_margin, step_wrong, proposal, best, margin, fooled_at, used,
            iteration + 3, ties, accept_ties)
    progress(iteration + 3, int(np.sum(fooled_at[active] == 0)), n)
  return SquareResult(best, used, fooled_at, margin, ties)


def _accept(active, step_margin, step_wrong, proposal, best, margin, fooled_at, used,
            count, ties, accept_ties) -> None:
  """Keeps the proposals that lower the margin (or misclassify); counts the query."""
  tied = step_margin == margin[active]
  ties[active[tied]] += 1
  improved = (step_margin < margin[active]) | step_wrong | (tied & accept_ties)
  chosen = active[improved]
  best[chosen] = proposal[improved]
  margin[chosen] = step_margin[improved]
  fooled_at[active[step_wrong]] = count
  used[active] = count


def _linf_proposal(x, best, eps, p, rng) -> np.ndarray:
  """One random +-eps square per image, different from the current best there."""
  n, h, w, c = x.shape
  delta = best - x
  side = int(min(max(round(np.sqrt(p * h * w)), 1), h - 1 if h > 1 else 1, w))
  for i in range(n):
    top = rng.integers(0, h - side + 1)
    left = rng.integers(0, w - side + 1)
    window = (i, slice(top, top + side), slice(left, left + side))
    for _ in range(100):  # Redraw when the square would not change the clipped image.
      current = np.clip(x[window] + delta[window], 0.0, 1.0)
      if np.any(np.abs(current - best[window]) >= 1e-7):
        break
      delta[window] = eps * rng.choice([-1.0, 1.0], size=[1, 1, c])
  return np.clip(x + delta, 0.0, 1.0)


def _l2_start(shape, rng) -> np.ndarray:
  """The L2 starting perturbation with unit norm per image: a grid of bumps."""
  n, h, w, c = shape
  delta = np.zeros(shape)
  s = max(h // 5, 1)
  top = (h - s * 5) // 2 if h >= 5 else 0
  for _ in range(h // s):
    left = (w - s * 5) // 2 if w >= 5 else 0
    for _ in range(w // s):
      patch = delta[:, top:top + s, left:left + s, :]
      bump = pseudo_gaussian(s, rng)[:patch.shape[1], :patch.shape[2]]
      patch += bump[None, :, :, None] * rng.choice([-1.0, 1.0], size=[n, 1, 1, c])
      left += s
    top += s
  return delta / np.maximum(_l2(delta), 1e-12)


def _l2_proposal(x, best, eps, p, rng) -> np.ndarray:
  """The L2 update: a new bump in window 1, window 2 emptied, rescaled to the budget."""
  n, h, w, c = x.shape
  delta = best - x
  side = max(int(round(np.sqrt(p * h * w))), 3)
  side = min(side + (1 - side % 2), h, w)  # odd, as in the paper
  top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
  top2, left2 = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
  win1 = (slice(None), slice(top, top + side), slice(left, left + side))
  win2 = (slice(None), slice(top2, top2 + side), slice(left2, left2 + side))
  mask = np.zeros_like(delta)
  mask[win1] = 1.0
  mask[win2] = 1.0
  norm_window = np.sqrt(np.sum(delta[win1] ** 2, axis=(1, 2), keepdims=True))
  norm_image = _l2(delta)
  norm_windows = np.sqrt(np.sum((delta * mask) ** 2, axis=(1, 2), keepdims=True))
  update = pseudo_gaussian(side, rng)[None, :, :, None] * rng.choice(
      [-1.0, 1.0], size=[n, 1, 1, c])
  update = update + delta[win1] / (1e-10 + norm_window)
  room = np.maximum(eps ** 2 - norm_image ** 2, 0.0) / c + norm_windows ** 2
  update = update / np.maximum(
      np.sqrt(np.sum(update ** 2, axis=(1, 2), keepdims=True)), 1e-12) * np.sqrt(room)
  delta[win2] = 0.0
  delta[win1] = update
  delta = delta / np.maximum(_l2(delta), 1e-12) * eps
  return np.clip(x + delta, 0.0, 1.0)


def failure_curve(result: SquareResult, labels, budgets) -> list:
  """The attack's failure rate after each budget (the paper's plots).

  Args:
    result: A `SquareResult`.
    labels: int [N] true labels (< 0: not counted).
    budgets: Query counts.

  Returns:
    [[budget, failure rate]]: among the known-label images correct on the clean
    query, the fraction still correct after `budget` queries (None if there are none).
  """
  known = np.asarray(labels).reshape(-1) >= 0
  attacked = known & (result.fooled_at != 1)
  curve = []
  for budget in budgets:
    if not attacked.any():
      curve.append([int(budget), None])
      continue
    fooled = (result.fooled_at[attacked] > 0) & (result.fooled_at[attacked] <= budget)
    curve.append([int(budget), float(1.0 - np.mean(fooled))])
  return curve


def query_stats(result: SquareResult, labels) -> dict:
  """Mean / median queries: over all attacked images and over the fooled ones."""
  known = np.asarray(labels).reshape(-1) >= 0
  attacked = known & (result.fooled_at != 1)
  fooled = attacked & result.fooled
  stats = {"attacked": int(attacked.sum()), "fooled": int(fooled.sum())}
  for key, chosen in (("all", attacked), ("successful", fooled)):
    values = result.queries[chosen]
    stats[f"mean_{key}"] = float(np.mean(values)) if values.size else None
    stats[f"median_{key}"] = float(np.median(values)) if values.size else None
  return stats
