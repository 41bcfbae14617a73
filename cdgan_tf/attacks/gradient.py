"""Gradient attacks: FGSM, PGD (L-inf / L2) and MI-FGSM with input diversity.

Every attack takes a differentiable `logits_fn(images) -> logits` with images float32
[N, H, W, C] in [0, 1] and logits float32 [N, num_classes] (the classifier adapters are
such callables), or a list of them: an ensemble, whose logits are the mean of the
members' log-softmax (`ensemble`), as used to build DAmageNet-like transfer sets.

Untargeted attacks ascend the cross-entropy of the true labels; targeted attacks
(`targeted=True`, `labels` = the target classes) descend the cross-entropy of the
targets. The iterations run inside one `tf.function` (a `tf.range` loop); compiled
loops are cached per (logits_fn, attack, static options), so calling an attack batch
after batch with the same classifier traces once. The numeric parameters (eps, step
size, decay, probabilities, seed, steps) are tensors and never cause a retrace.

The perturbation bound holds exactly after clipping to [0, 1]: L-inf attacks return
max |x_adv - x| <= eps (up to float32 rounding, < 1e-7), PGD-L2 returns per-image
||x_adv - x||_2 <= eps (< 1e-5).

References:
  FGSM: Goodfellow et al., "Explaining and harnessing adversarial examples", 2015.
  PGD: Madry et al., "Towards deep learning models resistant to adversarial attacks",
    2018 (default step 2.5 * eps / steps).
  MI-FGSM: Dong et al., "Boosting adversarial attacks with momentum", 2018.
  Input diversity: Xie et al., "Improving transferability of adversarial examples with
    input diversity", 2019 (random resize to [1, 330/299) of the side, random pad).
"""

from __future__ import annotations

import collections
import math
from typing import Callable, Sequence, Union

import numpy as np
import tensorflow as tf

from cdgan_tf.attacks import budget
from cdgan_tf.attacks import draws
from cdgan_tf.attacks import eot
from cdgan_tf.common import checks
from cdgan_tf.common import errors

LogitsFn = Callable[[tf.Tensor], tf.Tensor]
LogitsFns = Union[LogitsFn, Sequence[LogitsFn]]

NORMS = ("linf", "l2")
DIVERSITY_RATIO = draws.DIVERSITY_RATIO
input_diversity = draws.input_diversity
_TINY = 1e-12
_CACHE_SIZE = 64  # Evaluation grids compose many (classifier, defense) targets.


def ensemble(logits_fns: Sequence[LogitsFn]) -> LogitsFn:
  """Combines classifiers into one: the mean of their log-softmax outputs.

  Averaging log-probabilities (rather than raw logits) keeps members with differently
  scaled logits on an equal footing; softmax of the result is the normalised geometric
  mean of the members' probabilities, and its cross-entropy is the members' mean CE
  plus a term that does not depend on the label.

  Args:
    logits_fns: Callables images [N, H, W, C] in [0, 1] -> logits [N, num_classes],
      all with the same number of classes.

  Returns:
    A callable images -> float32 [N, num_classes] (mean log-softmax).
  """
  fns = tuple(logits_fns)
  if not fns:
    raise errors.UsageError("ensemble needs at least one logits_fn, got an empty list")
  if len(fns) == 1:
    return fns[0]

  def combined(images):
    outs = [tf.nn.log_softmax(tf.cast(fn(images), tf.float32), axis=-1) for fn in fns]
    return tf.add_n(outs) / float(len(outs))

  combined.members = fns
  return combined


def _members(logits_fn: LogitsFns):
  if isinstance(logits_fn, (list, tuple)):
    fns = tuple(logits_fn)
  else:
    fns = (logits_fn,)
  for fn in fns:
    if not callable(fn):
      raise TypeError(f"logits_fn must be callable or a list of callables, got {fn!r}")
  return fns


_COMPILED: "collections.OrderedDict[tuple, tuple]" = collections.OrderedDict()


def tracing_count(logits_fn: LogitsFns) -> int:
  """How many times the cached attack loops of this classifier (or ensemble) traced.

  Batch after batch with the same classifier, this stays constant: the numeric
  parameters are tensors, so only a new static option (norm, targeted, ...) traces.
  """
  ids = tuple(id(m) for m in _members(logits_fn))
  return sum(function.experimental_get_tracing_count()
             for key, (_, function) in _COMPILED.items() if key[0] == ids)


def _compiled(logits_fn: LogitsFns, kind: str, static: tuple, build) -> Callable:
  """Returns the cached tf.function `build(classifier)` for these options.

  Keyed by the identity of the classifier objects, so pass the same callable batch
  after batch (not a new lambda each time). The cache keeps the last _CACHE_SIZE
  entries, and with them their classifiers, alive.
  """
  members = _members(logits_fn)
  key = (tuple(id(m) for m in members), kind, static)
  if key in _COMPILED:
    _COMPILED.move_to_end(key)
    return _COMPILED[key][1]
  function = build(ensemble(members))
  _COMPILED[key] = (members, function)  # Holding members keeps their ids unique.
  while len(_COMPILED) > _CACHE_SIZE:
    _COMPILED.popitem(last=False)
  return function


def _check_inputs(images, labels):
  images = tf.convert_to_tensor(images)
  if not images.dtype.is_floating:
    raise errors.UsageError(f"images must be float32 in [0, 1], got dtype {images.dtype.name}")
  images = tf.cast(images, tf.float32)
  if images.shape.rank != 4:
    raise errors.UsageError(f"images must be [N, H, W, C], got shape {images.shape}")
  labels = tf.cast(tf.convert_to_tensor(labels), tf.int64)
  if labels.shape.rank != 1:
    raise errors.UsageError(f"labels must be [N] class indices, got shape {labels.shape}")
  if tf.executing_eagerly():
    if int(tf.shape(labels)[0]) != int(tf.shape(images)[0]):
      raise errors.UsageError(f"{int(tf.shape(labels)[0])} labels for "
                              f"{int(tf.shape(images)[0])} images")
    if int(tf.size(images)):
      low, high = float(tf.reduce_min(images)), float(tf.reduce_max(images))
      if low < 0.0 or high > 1.0:
        raise errors.UsageError(f"images must be in [0, 1], got values in [{low:.4g}, {high:.4g}]")
  return images, labels


def _check_eps(eps, norm: str = "linf") -> float:
  if isinstance(eps, str):
    eps = budget.parse_eps(eps)
  eps = float(eps)
  if not math.isfinite(eps) or eps < 0:
    raise errors.UsageError(f"eps={eps} must be a finite number >= 0")
  if norm == "linf" and eps > 1.0:
    raise errors.UsageError(f"L-inf eps={eps} exceeds the [0, 1] pixel range; "
                            f"did you mean {eps:g}/255?")
  return eps


def _check_steps(steps, step_size, total: float):
  """Validates steps and step_size; the default step_size is total / steps."""
  steps = int(steps)
  if steps < 1:
    raise errors.UsageError(f"steps={steps} must be >= 1")
  step_size = total / steps if step_size is None else float(step_size)
  if not math.isfinite(step_size) or step_size < 0:
    raise errors.UsageError(f"step_size={step_size} must be a finite number >= 0")
  return steps, step_size


def _loss(logits_fn, images, labels, targeted: bool):
  """Per-batch objective to ASCEND: CE(true) untargeted, -CE(target) targeted."""
  logits = tf.cast(logits_fn(images), tf.float32)
  ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
  return -tf.reduce_sum(ce) if targeted else tf.reduce_sum(ce)


def _gradient(logits_fn, images, labels, targeted: bool, transform=None):
  with tf.GradientTape() as tape:
    tape.watch(images)
    inputs = images if transform is None else transform(images)
    loss = _loss(logits_fn, inputs, labels, targeted)
  grad = tape.gradient(loss, images)
  if grad is None:
    raise errors.UsageError("logits_fn is not differentiable with respect to its input "
                            "(gradient is None); wrap a non-differentiable purifier in bpda()")
  # A classifier traced earlier with a relaxed batch size returns a [None, ...] gradient,
  # which would break the loop's shape invariant when this trace has a static batch.
  return tf.ensure_shape(grad, images.shape)


def _l2_norm(x):
  """Per-image L2 norm of [N, H, W, C] -> [N, 1, 1, 1]."""
  return tf.sqrt(tf.reduce_sum(tf.square(x), axis=[1, 2, 3], keepdims=True))


def _project_linf(x, clean, eps):
  """Clips into the eps L-inf ball around `clean` and into [0, 1]."""
  x = tf.clip_by_value(x, clean - eps, clean + eps)
  return tf.clip_by_value(x, 0.0, 1.0)


def _project_l2(x, clean, eps):
  """Scales each image's perturbation into the eps L2 ball, then clips to [0, 1].

  Clipping to [0, 1] only shrinks components of the perturbation, so the bound holds.
  """
  delta = x - clean
  norm = _l2_norm(delta)
  factor = tf.minimum(1.0, eps / tf.maximum(norm, _TINY))
  return tf.clip_by_value(clean + delta * factor, 0.0, 1.0)


def _seed_tensor(seed) -> tf.Tensor:
  """A scalar seed (one stream per batch) or int [N] (one per image) as int64."""
  if not tf.is_tensor(seed):
    seed = np.asarray(seed)
    seed = tf.constant(int(seed) if seed.ndim == 0 else seed.astype(np.int64), tf.int64)
  seed = tf.cast(seed, tf.int64)
  if seed.shape.rank not in (0, 1):
    raise errors.UsageError(f"seed of shape {seed.shape.as_list()}: expected a scalar or "
                            "one seed per image")
  return seed


def fgsm(logits_fn: LogitsFns, images, labels, eps, targeted: bool = False) -> tf.Tensor:
  """Fast gradient sign method: one signed-gradient step of size eps.

  Args:
    logits_fn: images [N, H, W, C] in [0, 1] -> logits [N, K]; or a list (ensemble).
    images: float32 [N, H, W, C] in [0, 1], the clean images.
    labels: int [N]; true labels, or target labels when `targeted`.
    eps: L-inf budget in [0, 1] (float or a string such as "8/255").
    targeted: Descend the cross-entropy of `labels` instead of ascending it.

  Returns:
    float32 [N, H, W, C] in [0, 1] with max |x_adv - images| <= eps.
  """
  eps = _check_eps(eps)
  return pgd(logits_fn, images, labels, eps, steps=1, step_size=eps, norm="linf",
             random_start=False, targeted=targeted)


def pgd(logits_fn: LogitsFns, images, labels, eps, steps: int = 10, step_size=None,
        norm: str = "linf", random_start: bool = True, targeted: bool = False,
        seed: int = 0, eot_samples: int = 1) -> tf.Tensor:
  """Projected gradient descent (Madry et al. 2018) in the L-inf or L2 ball.

  L-inf steps follow the gradient sign; L2 steps follow the per-image L2-normalised
  gradient. The random start is uniform in the L-inf cube, or, for L2, a uniformly
  random direction scaled by eps * U(0, 1).

  Args:
    logits_fn: images [N, H, W, C] in [0, 1] -> logits [N, K]; or a list (ensemble).
    images: float32 [N, H, W, C] in [0, 1], the clean images.
    labels: int [N]; true labels, or target labels when `targeted`.
    eps: Budget (L-inf: in [0, 1]; L2: per-image Euclidean norm on the [0, 1] scale).
      A float or a string such as "8/255".
    steps: Iterations (>= 1).
    step_size: Step length; default 2.5 * eps / steps.
    norm: "linf" or "l2".
    random_start: Start from a random point in the ball instead of the clean image.
    targeted: Descend the cross-entropy of `labels` instead of ascending it.
    seed: Seed of the random start (stateless: same seed, same result): an int, or
      int [N], one per image (`draws`: then an image's result does not depend on its
      batch mates).
    eot_samples: K: each step follows the mean of K gradients (`eot.mean_gradient`),
      for a randomized `logits_fn` whose every call draws new randomness; 1: plain PGD.

  Returns:
    float32 [N, H, W, C] in [0, 1] inside the eps ball around `images`.
  """
  checks.check_choice("norm", norm, NORMS)
  eot_samples = eot.check_samples(eot_samples)
  eps = _check_eps(eps, norm)
  steps, step_size = _check_steps(steps, step_size, 2.5 * eps)
  images, labels = _check_inputs(images, labels)
  project = _project_linf if norm == "linf" else _project_l2

  def build(fn):
    @tf.function(reduce_retracing=True)
    def run(x, y, eps_t, alpha, n_steps, seed_t, eot_t):
      if random_start:
        if norm == "linf":
          noise = draws.uniform(tf.shape(x), draws.step_seed(seed_t, 0, 1), -1.0, 1.0) * eps_t
        else:
          direction = draws.normal(tf.shape(x), draws.step_seed(seed_t, 0, 2))
          direction /= tf.maximum(_l2_norm(direction), _TINY)
          radius = draws.uniform(tf.stack([tf.shape(x)[0], 1, 1, 1]),
                                 draws.step_seed(seed_t, 0, 3))
          noise = direction * radius * eps_t
        adv = project(x + noise, x, eps_t)
      else:
        adv = tf.identity(x)
      for _ in tf.range(n_steps):
        grad = eot.mean_gradient(lambda: _gradient(fn, adv, y, targeted), eot_t)
        if norm == "linf":
          step = tf.sign(grad)
        else:
          step = grad / tf.maximum(_l2_norm(grad), _TINY)
        adv = project(adv + alpha * step, x, eps_t)
      return adv
    return run

  seed = _seed_tensor(seed)  # One compiled loop per seed rank (per batch / per image).
  run = _compiled(logits_fn, "pgd", (norm, bool(random_start), bool(targeted),
                                     seed.shape.rank), build)
  return run(images, labels, tf.constant(eps, tf.float32),
             tf.constant(step_size, tf.float32), tf.constant(steps, tf.int32),
             seed, tf.constant(eot_samples, tf.int32))


def mifgsm(logits_fn: LogitsFns, images, labels, eps, steps: int = 10, step_size=None,
           decay: float = 1.0, diversity_prob: float = 0.0, targeted: bool = False,
           seed: int = 0) -> tf.Tensor:
  """Momentum iterative FGSM (Dong et al. 2018), optionally with input diversity.

  g <- decay * g + grad / mean|grad| (L1-normalised per image);
  x <- clip(x + step_size * sign(g)) into the eps ball and [0, 1].
  With diversity_prob > 0 (M-DI2-FGSM) each gradient is taken through
  `input_diversity` with that probability. Built for transfer attacks.

  Args:
    logits_fn: images [N, H, W, C] in [0, 1] -> logits [N, K]; or a list (ensemble).
    images: float32 [N, H, W, C] in [0, 1], the clean images.
    labels: int [N]; true labels, or target labels when `targeted`.
    eps: L-inf budget in [0, 1] (float or a string such as "16/255").
    steps: Iterations (>= 1).
    step_size: Step length; default eps / steps (the paper's choice).
    decay: Momentum decay factor mu (paper: 1.0).
    diversity_prob: Probability p of the input-diversity transform per step.
    targeted: Descend the cross-entropy of `labels` instead of ascending it.
    seed: Seed of the diversity draws (stateless: same seed, same result): an int, or
      int [N], one per image (`draws`: each image draws its own transforms, and its
      result does not depend on its batch mates).

  Returns:
    float32 [N, H, W, C] in [0, 1] with max |x_adv - images| <= eps.
  """
  eps = _check_eps(eps)
  steps, step_size = _check_steps(steps, step_size, eps)
  if not 0.0 <= float(diversity_prob) <= 1.0:
    raise errors.UsageError(f"diversity_prob={diversity_prob} must be in [0, 1]")
  images, labels = _check_inputs(images, labels)
  use_diversity = float(diversity_prob) > 0.0

  def build(fn):
    @tf.function(reduce_retracing=True)
    def run(x, y, eps_t, alpha, n_steps, mu, prob, seed_t):
      adv = tf.identity(x)
      momentum = tf.zeros_like(x)
      for i in tf.range(n_steps):
        transform = None
        if use_diversity:
          step_seed = draws.step_seed(seed_t, i, 4)
          transform = lambda z, s=step_seed: draws.input_diversity(z, prob, s)  # noqa: E731
        grad = _gradient(fn, adv, y, targeted, transform)
        grad /= tf.maximum(
            tf.reduce_mean(tf.abs(grad), axis=[1, 2, 3], keepdims=True), _TINY)
        momentum = mu * momentum + grad
        adv = _project_linf(adv + alpha * tf.sign(momentum), x, eps_t)
      return adv
    return run

  seed = _seed_tensor(seed)
  run = _compiled(logits_fn, "mifgsm", (bool(targeted), use_diversity, seed.shape.rank),
                  build)
  return run(images, labels, tf.constant(eps, tf.float32),
             tf.constant(step_size, tf.float32), tf.constant(steps, tf.int32),
             tf.constant(float(decay), tf.float32),
             tf.constant(float(diversity_prob), tf.float32), seed)
