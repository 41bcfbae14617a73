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

The top-level classifier entries are the primary attack's (the paper's `transfer`
setting when adversarial images are given) and the top-level `defense` /
`defense_clean` are CD-GAN's; every other defense is under "defenses".
"""

from __future__ import annotations

import collections
from typing import Dict, Optional

import numpy as np

PRIMARY_DEFENSE = "cdgan"
CONDITIONS = ("normal", "attack", "defense", "defense_clean")


class AccuracyTable:
  """Counts correct predictions per (attack, classifier, defense, condition)."""

  def __init__(self, primary_attack: str = "transfer"):
    self.primary_attack = primary_attack
    self._correct = collections.defaultdict(int)
    self._total = collections.defaultdict(int)
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
    self._correct[key] += int(np.sum(predictions[known] == labels[known]))
    self._total[key] += int(np.sum(known))
    for items, value in ((self._classifiers, classifier), (self._defenses, defense),
                         (self._attacks, attack)):
      if value is not None and value not in items:
        items.append(value)

  def _key(self, classifier, condition, defense=None, attack=None) -> tuple:
    """(attack, classifier, defense, condition) with the fields the condition has."""
    if condition not in CONDITIONS:
      raise ValueError(f"unknown condition {condition!r}")
    defense = None if condition in ("normal", "attack") else defense or PRIMARY_DEFENSE
    attack = None if condition in ("normal", "defense_clean") else (
        attack or self.primary_attack)
    return (attack, classifier, defense, condition)

  def accuracy(self, classifier, condition, defense=None, attack=None) -> Optional[float]:
    """Fraction correct so far, or None when nothing was counted."""
    key = self._key(classifier, condition, defense, attack)
    total = self._total.get(key, 0)
    return self._correct[key] / total if total else None

  def _entry(self, classifier: str, attack: str, with_clean: bool) -> dict:
    entry = {}
    conditions = CONDITIONS if with_clean else ("attack", "defense")
    for condition in conditions:
      value = self.accuracy(classifier, condition, attack=attack)
      if value is not None:
        entry[condition] = value
    defenses = {}
    for defense in self._defenses:
      values = {}
      for condition in ("defense", "defense_clean") if with_clean else ("defense",):
        value = self.accuracy(classifier, condition, defense=defense, attack=attack)
        if value is not None:
          values[condition] = value
      if values:
        defenses[defense] = values
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
