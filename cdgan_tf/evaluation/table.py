"""The streaming accuracy table behind evaluate.py's reports.

Accuracies are counted batch by batch (memory does not grow with the number of
images) per classifier, per attack and per condition:

  normal         clean images, no defense
  attack         adversarial images, no defense
  defense        adversarial images through the defense
  defense_clean  clean images through the defense (what the defense costs honest users)

`results.json` layout (accuracies are fractions; absent fields are omitted):

  {"classifiers": {NAME: {"normal": f, "attack": f, "defense": f, "defense_clean": f,
                          "n": int, "defenses": {DEFENSE: {"defense": f,
                                                           "defense_clean": f}}}},
   "attacks": {ATTACK: {"params": {...}, "classifiers": {NAME: {same fields}}}},
   "settings": {...}}

Every entry with accuracies also has "ci95": {CONDITION: [low, high]} (95 % Wilson
intervals, `intervals.wilson`), and every defense entry "p_value": {CONDITION:
{"no_defense": p, OTHER_DEFENSE: p}}: the exact McNemar test of that defense against no
defense (its "defense" against the unprotected "attack", its "defense_clean" against
"normal") and against each other defense, on the same images. Each top-level classifier
entry has "worst_case": {"no_defense" | DEFENSE: {"accuracy": f, "ci95": [l, h],
"attack": ATTACK}}, the lowest adversarial accuracy over every attack of the run.

The top-level classifier entries are the primary attack's (the paper's `transfer`
setting when adversarial images are given) and the top-level `defense` /
`defense_clean` are CD-GAN's; every other defense is under "defenses".
"""

from __future__ import annotations

import collections
from typing import Dict, Optional

import numpy as np

from cdgan_tf.common import errors
from cdgan_tf.evaluation import intervals

PRIMARY_DEFENSE = "cdgan"
CONDITIONS = ("normal", "attack", "defense", "defense_clean")
NO_DEFENSE = "no_defense"
# The condition without defense each defended condition is paired with.
_UNDEFENDED = {"defense": "attack", "defense_clean": "normal"}


class AccuracyTable:
  """Counts correct predictions per (attack, classifier, defense, condition)."""

  def __init__(self, primary_attack: str = "transfer"):
    self.primary_attack = primary_attack
    self._correct = collections.defaultdict(int)
    self._total = collections.defaultdict(int)
    self._hits = collections.defaultdict(list)  # key -> bool arrays, batch by batch
    self._params: Dict[str, dict] = {}
    self._classifiers: list = []
    self._defenses: list = []
    self._attacks: list = []

  def set_attack_params(self, attack: str, params: dict) -> None:
    self._params[attack] = dict(params)

  def add(self, classifier: str, condition: str, predictions, labels,
          defense: Optional[str] = None, attack: Optional[str] = None) -> None:
    """Adds one batch.

    Args:
      classifier: Classifier name.
      condition: One of CONDITIONS.
      predictions: int [N] predicted labels.
      labels: int [N] true labels; entries < 0 (unknown) are not counted.
      defense: Defense name for "defense"/"defense_clean" (default: cdgan).
      attack: Attack name for "attack"/"defense" (default: the primary attack).
    """
    key = self._key(classifier, condition, defense, attack)
    attack, _, defense, _ = key
    predictions = np.asarray(predictions).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    known = labels >= 0
    hits = predictions[known] == labels[known]
    self._hits[key].append(hits)
    self._correct[key] += int(np.sum(hits))
    self._total[key] += int(np.sum(known))
    for items, value in ((self._classifiers, classifier), (self._defenses, defense),
                         (self._attacks, attack)):
      if value is not None and value not in items:
        items.append(value)

  def _key(self, classifier, condition, defense=None, attack=None) -> tuple:
    """(attack, classifier, defense, condition) with the fields the condition has."""
    if condition not in CONDITIONS:
      raise errors.UsageError(f"unknown condition {condition!r}")
    defense = None if condition in ("normal", "attack") else defense or PRIMARY_DEFENSE
    attack = None if condition in ("normal", "defense_clean") else (
        attack or self.primary_attack)
    return (attack, classifier, defense, condition)

  def accuracy(self, classifier, condition, defense=None, attack=None) -> Optional[float]:
    """Fraction correct so far, or None when nothing was counted."""
    key = self._key(classifier, condition, defense, attack)
    total = self._total.get(key, 0)
    return self._correct[key] / total if total else None

  def interval(self, classifier, condition, defense=None, attack=None):
    """95 % Wilson interval [low, high] of `accuracy`, or None when nothing was counted."""
    key = self._key(classifier, condition, defense, attack)
    bounds = intervals.wilson(self._correct.get(key, 0), self._total.get(key, 0))
    return None if bounds is None else [bounds[0], bounds[1]]

  def hits(self, classifier, condition, defense=None, attack=None) -> np.ndarray:
    """Per-image correctness so far, in stream order: bool [n]."""
    key = self._key(classifier, condition, defense, attack)
    parts = self._hits.get(key, [])
    return np.concatenate(parts) if parts else np.zeros([0], bool)

  def p_values(self, classifier, condition, defense, attack=None) -> dict:
    """Exact McNemar p-values of a defense against no defense and the other defenses.

    Args:
      condition: "defense" (paired with the unprotected "attack") or "defense_clean"
        (paired with "normal").

    Returns:
      {"no_defense": p, OTHER_DEFENSE: p}, for the comparisons counted on the same
      number of images.
    """
    mine = self.hits(classifier, condition, defense, attack)
    others = [(NO_DEFENSE, self.hits(classifier, _UNDEFENDED[condition], attack=attack))]
    others += [(d, self.hits(classifier, condition, d, attack))
               for d in self._defenses if d != defense]
    return {name: intervals.paired_p_value(mine, theirs) for name, theirs in others
            if theirs.size and theirs.size == mine.size}

  def worst_case(self, classifier) -> dict:
    """Lowest adversarial accuracy per defense (and without) over every attack.

    Returns:
      {"no_defense" | DEFENSE: {"accuracy": f, "ci95": [l, h], "attack": name}}.
    """
    result = {}
    for defense in [None] + list(self._defenses):
      condition = "attack" if defense is None else "defense"
      scored = [(self.accuracy(classifier, condition, defense, a), a)
                for a in self._attacks]
      scored = [(v, a) for v, a in scored if v is not None]
      if scored:
        value, attack = min(scored, key=lambda s: s[0])  # First attack wins ties.
        result[defense or NO_DEFENSE] = {
            "accuracy": value, "attack": attack,
            "ci95": self.interval(classifier, condition, defense, attack)}
    return result

  def _entry(self, classifier: str, attack: str, with_clean: bool) -> dict:
    entry = {}
    conditions = CONDITIONS if with_clean else ("attack", "defense")
    ci95 = {}
    for condition in conditions:
      value = self.accuracy(classifier, condition, attack=attack)
      if value is not None:
        entry[condition] = value
        ci95[condition] = self.interval(classifier, condition, attack=attack)
    if ci95:
      entry["ci95"] = ci95
    defenses = {}
    for defense in self._defenses:
      values, ci95, p_values = {}, {}, {}
      for condition in ("defense", "defense_clean") if with_clean else ("defense",):
        value = self.accuracy(classifier, condition, defense=defense, attack=attack)
        if value is not None:
          values[condition] = value
          ci95[condition] = self.interval(classifier, condition, defense, attack)
          p_values[condition] = self.p_values(classifier, condition, defense, attack)
      if values:
        defenses[defense] = dict(values, ci95=ci95, p_value=p_values)
    if defenses:
      entry["defenses"] = defenses
    counts = [t for (a, c, _, _), t in self._total.items()
              if c == classifier and (a in (None, attack))]
    entry["n"] = max(counts) if counts else 0
    return entry

  def to_dict(self, settings: Optional[dict] = None) -> dict:
    """The results.json content."""
    result = {"classifiers": {c: self._entry(c, self.primary_attack, True)
                              for c in self._classifiers}}
    for c in self._classifiers:
      worst = self.worst_case(c)
      if worst:
        result["classifiers"][c]["worst_case"] = worst
    result["statistics"] = {"ci95": intervals.INTERVAL_METHOD,
                            "p_value": intervals.PAIRED_TEST_METHOD}
    others = [a for a in self._attacks if a != self.primary_attack]
    if others or self._params:
      result["attacks"] = {}
      for attack in [self.primary_attack] + others:
        if attack not in self._attacks and attack not in self._params:
          continue
        result["attacks"][attack] = {
            "params": self._params.get(attack, {}),
            "classifiers": {c: self._entry(c, attack, False) for c in self._classifiers}}
    if settings:
      result["settings"] = settings
    return result
