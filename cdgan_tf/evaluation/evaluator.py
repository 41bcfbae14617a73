"""The streaming evaluation loop: classifiers x defenses x threat models, batch by batch.

One pass over the data fills a `table.AccuracyTable` with every combination: each
classifier without defense and behind each defense, on clean images, on the given
(transfer) adversarial images, and under the gradient attacks:

  transfer        the adversarial images that came with the data (the paper's setting)
  pgd_classifier  PGD on the classifier alone; the defense is then put in front
                  (the attacker does not know the defense)
  pgd_defended    white-box PGD through purifier + classifier (the attacker knows
                  everything); only for differentiable defenses
  bpda            PGD with the purifier run forward and treated as the identity
                  backward (Athalye et al. 2018); works for any defense
  square          the Square attack (L-inf; `square_l2`: L2), score-based black box:
                  it queries the deployed pipeline (purifier + classifier, or the bare
                  classifier) for output scores only, so it also runs on TFLite models
  hopskipjump     HopSkipJump (L2; `hopskipjump_linf`: L-inf), decision-based black
                  box: the deployed pipeline's top-1 label only

Randomized defenses (`defenses.randomized`, a new random input transformation per
call) are attacked with EOT: pgd_defended and bpda follow the mean of `eot_samples`
gradients per step; the query attacks see one fresh draw per query. Each of their
accuracies is scored `draws` times (new draws on the same images): the table holds the
first draw (so intervals and paired tests stay per image), results.json's
"randomized" block the mean, standard deviation, minimum and maximum over the draws.

Purified images are computed once per batch and defense and shared by all classifiers.
"""

from __future__ import annotations

import copy
import csv
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from cdgan_tf.attacks import bpda as bpda_lib
from cdgan_tf.attacks import hopskipjump as hsj_lib
from cdgan_tf.attacks import square as square_lib
from cdgan_tf.common import errors
from cdgan_tf.common import interrupts
from cdgan_tf.data.batch import Batch
from cdgan_tf.defenses import base as defenses_base
from cdgan_tf.defenses import randomized
from cdgan_tf.evaluation import table as table_lib
from cdgan_tf.evaluation.threats import (  # noqa: F401  (re-exported: evaluator.ThreatModel)
    DECISION_THREATS, GRADIENT_THREATS, QUERY_THREATS, SCORE_THREATS, THREATS, TRANSFER,
    ThreatModel, check_attackable)

# Query counts at which results.json records the query attacks' failure rate.
CURVE_BUDGETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def predict(classifier, images) -> np.ndarray:
  """Top-1 labels of a batch: int [N]."""
  return tf.argmax(classifier(images), axis=-1).numpy()


class Evaluator:
  """Streams batches through every classifier x defense x threat-model combination.

  Args:
    classifiers: Adapters with `.name`, `.differentiable` and `__call__(images) ->
      logits [N, num_classes]` (`cdgan_tf.classifiers`).
    defenses: name -> `defenses.Purifier`; "cdgan" is the primary one.
    threats: Which threat models to run; include ThreatModel("transfer") to score the
      batches' own adversarial images.
    seed: Seed of the attacks' random starts.
    prediction_file: Optional open text file; one CSV row per image and condition
      (key, label, classifier, attack, defense, condition, prediction) is streamed to it.
    eot_samples: Gradients averaged per PGD step against randomized defenses (EOT).
    draws: Random draws each accuracy of a randomized defense is scored over.
    should_stop: Polled by the query attacks before each round of queries (a batch of
      1,000-query attacks can take many minutes); when it returns true the batch under
      way is abandoned: none of it is counted or written, `run` stops and `abandoned`
      says where.
  """

  def __init__(self, classifiers, defenses: Dict[str, defenses_base.Purifier],
               threats: Sequence[ThreatModel] = (ThreatModel(TRANSFER),), seed: int = 0,
               prediction_file=None, eot_samples: int = 1, draws: int = 1,
               should_stop: Optional[Callable[[], bool]] = None):
    if int(draws) < 1:
      raise errors.UsageError(f"draws={draws} must be >= 1")
    self.eot_samples = int(eot_samples)
    self.draws = int(draws)
    self._draw_counts = {}  # (attack, classifier, defense, condition) -> [counts, n]
    self.classifiers = list(classifiers)
    self.defenses = dict(defenses)
    self.threats = list(threats)
    check_attackable(self.threats, self.classifiers)
    self.seed = seed
    self.notes: List[str] = []
    if any(t.attack is not None for t in self.threats):
      for c in self.classifiers:
        if c.gradient_source != "model":
          self.notes.append(f"{c.name}: gradient attacks took their gradients from the "
                            f"{c.gradient_source}; its accuracies are the real model's")
    primary = self.threats[0].name if self.threats else TRANSFER
    self.table = table_lib.AccuracyTable(primary_attack=primary)
    for threat in self.threats:
      if threat.params():
        self.table.set_attack_params(threat.name, threat.params())
    # One graph per purifier for every batch size (defenses.base.batch_invariant); on CPU
    # it runs in chunks of defenses_base.CPU_BATCH_SIZE images (faster than one call on a
    # big batch), on a GPU / TPU on the whole batch.
    chunk = defenses_base.cpu_batch_size()
    self._purify = {name: defenses_base.batch_invariant(d, chunk)
                    for name, d in self.defenses.items()}
    # Composed targets are built once so the attacks' compiled loops are reused.
    self._defended = {(c.name, d): defenses_base.DefendedClassifier(self.defenses[d], c)
                      for c in self.classifiers for d in self.defenses}
    self._bpda = {(c.name, d): (lambda x, c=c, b=bpda_lib.bpda(self._purify[d]): c(b(x)))
                  for c in self.classifiers for d in self.defenses}
    self._query_log = {}  # (attack, classifier, defense) -> [(fooled_at, queries, labels)]
    self.images_seen = 0
    self.abandoned: Optional[str] = None
    self._should_stop = should_stop
    self._keys: Sequence[str] = ()
    self._rows: List[list] = []  # The batch's prediction rows, written when it is done.
    self._writer = None
    if prediction_file is not None:
      self._writer = csv.writer(prediction_file)
      self._writer.writerow(["key", "label", "classifier", "attack", "defense", "condition",
                             "prediction"])

  def _add(self, classifier, condition, images, labels, defense=None, attack=None):
    """Classifies `images` and counts the batch (and streams the predictions)."""
    predictions = predict(classifier, images)
    self.table.add(classifier.name, condition, predictions, labels, defense=defense,
                   attack=attack)
    if self._writer is not None:
      for key, label, prediction in zip(self._keys, labels, predictions):
        self._rows.append([key, int(label), classifier.name, attack or "", defense or "",
                           condition, int(prediction)])

  def _draws(self, name: str, images) -> List[tf.Tensor]:
    """The purified images: `draws` random draws for a randomized defense, else one."""
    count = self.draws if randomized.is_randomized(self.defenses[name]) else 1
    return [self._purify[name](images) for _ in range(count)]

  def _add_defended(self, classifier, condition, purified: List[tf.Tensor], labels,
                    defense: str, attack=None) -> None:
    """Scores the first draw in the table and every draw in the draw statistics."""
    self._add(classifier, condition, purified[0], labels, defense=defense, attack=attack)
    if len(purified) < 2:
      return
    known = labels >= 0
    counts = np.array([np.sum(predict(classifier, p)[known] == labels[known])
                       for p in purified])
    key = (attack or "clean", classifier.name, defense, condition)
    entry = self._draw_counts.setdefault(key, [np.zeros(len(purified), np.int64), 0])
    entry[0] += counts
    entry[1] += int(np.sum(known))

  def draw_report(self) -> dict:
    """{defense: {classifier: {attack | "clean": {mean, std, min, max, draws, n}}}}."""
    report = {}
    for (attack, classifier, defense, _), (counts, total) in self._draw_counts.items():
      if not total:
        continue
      accuracy = counts / total
      report.setdefault(defense, {}).setdefault(classifier, {})[attack] = {
          "mean": float(np.mean(accuracy)),
          "std": float(np.std(accuracy, ddof=1)) if len(accuracy) > 1 else 0.0,
          "min": float(np.min(accuracy)), "max": float(np.max(accuracy)),
          "draws": int(len(accuracy)), "n": int(total)}
    return report

  def _score_defenses(self, images, labels, condition: str, attack=None) -> None:
    for name in self._purify:
      purified = self._draws(name, images)
      for c in self.classifiers:
        self._add_defended(c, condition, purified, labels, name, attack)

  def add_batch(self, batch: Batch) -> bool:
    """Scores one batch under every configured condition.

    Returns:
      True; False when a stop request abandoned the batch inside a query attack (then
      nothing of it is counted or written and `abandoned` says where).
    """
    stoppable = self._should_stop is not None and any(
        t.name in QUERY_THREATS for t in self.threats)
    saved = copy.deepcopy((self.table, self._draw_counts, self._query_log)
                          ) if stoppable else None
    self._rows = []
    try:
      self._score_batch(batch)
    except interrupts.Abandoned as e:
      self.table, self._draw_counts, self._query_log = saved
      self._rows = []
      self.abandoned = f"the batch under way ({len(batch.labels)} images) not counted: {e}"
      self._note(f"stopped inside a query attack: {self.abandoned}")
      return False
    if self._writer is not None:
      self._writer.writerows(self._rows)
    self._rows = []
    self.images_seen += len(batch.labels)
    return True

  def _score_batch(self, batch: Batch) -> None:
    labels = np.asarray(batch.labels)
    self._keys = list(batch.keys)
    if batch.clean is not None:
      clean = tf.convert_to_tensor(batch.clean, tf.float32)
      for c in self.classifiers:
        self._add(c, "normal", clean, labels)
      self._score_defenses(clean, labels, "defense_clean")
    for threat in self.threats:
      if threat.name == TRANSFER:
        if batch.adversarial is None:
          continue
        adversarial = tf.convert_to_tensor(batch.adversarial, tf.float32)
        for c in self.classifiers:
          self._add(c, "attack", adversarial, labels, attack=TRANSFER)
        self._score_defenses(adversarial, labels, "defense", attack=TRANSFER)
      elif batch.clean is not None and threat.name in QUERY_THREATS:
        self._query_attack(threat, np.asarray(batch.clean, np.float32), labels)
      elif batch.clean is not None:
        self._gradient_attack(threat, tf.convert_to_tensor(batch.clean, tf.float32), labels)

  def _note(self, note: str) -> None:
    if note not in self.notes:
      self.notes.append(note)
      logging.warning(note)

  def _gradient_attack(self, threat: ThreatModel, clean, labels) -> None:
    if not np.any(labels >= 0):
      return
    labels_t = tf.convert_to_tensor(labels, tf.int64)
    for c in self.classifiers:
      if threat.name == "pgd_classifier":
        adversarial = threat.attack.run(c, clean, labels_t, seed=self.seed)
        self._add(c, "attack", adversarial, labels, attack=threat.name)
        for name in self._purify:
          self._add_defended(c, "defense", self._draws(name, adversarial), labels, name,
                             threat.name)
        continue
      for name, defense in self.defenses.items():
        if threat.name == "pgd_defended":
          if not defense.differentiable:
            self._note(f"pgd_defended skipped for {name}: not differentiable (see bpda)")
            continue
          target = self._defended[(c.name, name)]
        else:
          target = self._bpda[(c.name, name)]
        eot = self.eot_samples if randomized.is_randomized(defense) else 1
        adversarial = threat.attack.run(target, clean, labels_t, seed=self.seed,
                                        eot_samples=eot)
        self._add_defended(c, "defense", self._draws(name, adversarial), labels, name,
                           threat.name)

  def _query_attack(self, threat: ThreatModel, clean: np.ndarray, labels) -> None:
    """Square attack on each classifier alone and behind each defense (scores only)."""
    if not np.any(labels >= 0):
      return
    for c in self.classifiers:
      targets = [(None, c)] + [(d, lambda x, c=c, p=self._purify[d]: c(p(x)))
                               for d in self.defenses]
      for defense, target in targets:
        name = f"{threat.name} {c.name}/{defense or 'no defense'}"
        norm = QUERY_THREATS[threat.name]
        if threat.name in DECISION_THREATS:
          result = hsj_lib.hopskipjump(
              lambda x, t=target: np.argmax(t(tf.convert_to_tensor(x)).numpy(), axis=-1),
              clean, labels, threat.eps, norm=norm, queries=threat.queries,
              seed=self.seed, name=name, should_stop=self._should_stop)
        else:
          result = square_lib.square_attack(
              lambda x, t=target: t(tf.convert_to_tensor(x)).numpy(), clean, labels,
              threat.eps, norm=norm, queries=threat.queries, seed=self.seed, name=name,
              should_stop=self._should_stop)
        adversarial = tf.convert_to_tensor(result.adversarial)
        if defense is None:
          self._add(c, "attack", adversarial, labels, attack=threat.name)
        else:
          self._add_defended(c, "defense", self._draws(defense, adversarial), labels,
                             defense, threat.name)
        key = (threat.name, c.name, defense or table_lib.NO_DEFENSE)
        self._query_log.setdefault(key, []).append(
            (result.fooled_at, result.queries, np.asarray(labels), result.ties))

  def query_report(self) -> dict:
    """{attack: {classifier: {defense: query stats + failure-rate curve}}} so far.

    The stats are `square.query_stats` (mean / median queries over the attacked images
    and over those it fooled; for HopSkipJump, which uses its whole budget, the queries
    up to its first point within eps); "failure_rate" is `square.failure_curve` at
    CURVE_BUDGETS up to the budget; "tied_proposals" the fraction of the attack's
    proposals whose margin equalled the best one exactly (quantized scores).
    """
    report = {}
    for (attack, classifier, defense), parts in self._query_log.items():
      counted = all(p[3] is not None for p in parts)
      parts = [p[:3] + (p[3] if counted else np.zeros_like(p[1]),) for p in parts]
      fooled_at, queries, labels, ties = (np.concatenate(p) for p in zip(*parts))
      if attack in DECISION_THREATS:  # it goes on shrinking after success: count to it
        queries = np.where(fooled_at > 0, np.minimum(fooled_at, queries), queries)
      result = square_lib.SquareResult(None, queries, fooled_at, None)
      budget = next(t.queries for t in self.threats if t.name == attack)
      budgets = [b for b in CURVE_BUDGETS if b < budget] + [budget]
      stats = square_lib.query_stats(result, labels)
      stats["failure_rate"] = square_lib.failure_curve(result, labels, budgets)
      proposals = np.sum(np.maximum(queries - 1, 0))
      stats["tied_proposals"] = (float(np.sum(ties) / proposals) if proposals and counted
                                 else None)
      report.setdefault(attack, {}).setdefault(classifier, {})[defense] = stats
    return report

  def run(self, batches: Iterable[Batch], log_every: int = 10) -> dict:
    """Consumes the stream; returns the results dict (see table.AccuracyTable)."""
    start = time.time()
    for i, batch in enumerate(batches, 1):
      if not self.add_batch(batch):
        break
      if i % log_every == 0:
        rate = self.images_seen / max(time.time() - start, 1e-9)
        first = self.classifiers[0].name
        logging.info("%d images (%.1f img/s); %s: normal %s attack %s defense %s",
                     self.images_seen, rate, first,
                     *(_fmt(self.table.accuracy(first, k)) for k in
                       ("normal", "attack", "defense")))
    results = self.table.to_dict()
    for attack, report in self.query_report().items():
      results.setdefault("attacks", {}).setdefault(attack, {})["queries"] = report
    draws = self.draw_report()
    if draws:
      results["randomized"] = {
          "draws": self.draws, "eot_samples": self.eot_samples,
          "transforms": {n: d.describe() for n, d in self.defenses.items()
                         if randomized.is_randomized(d)},
          "accuracy": draws}
    if self.notes:
      results["notes"] = list(self.notes)
    return results


def _fmt(value) -> str:
  return "-" if value is None else f"{100 * value:.1f}%"
