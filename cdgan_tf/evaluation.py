"""Streaming accuracy tables and the reports evaluate.py writes.

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
import json
import os
from typing import Dict, Optional, Sequence

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


def _pct(value) -> str:
  return "" if value is None else f"{100.0 * value:.2f}"


def markdown_table(results: dict) -> str:
  """Renders results.json as Markdown tables (top-1 accuracy in %)."""
  lines = ["# Top-1 accuracy (%)", ""]
  classifiers = results.get("classifiers", {})
  defenses = sorted({d for e in classifiers.values() for d in e.get("defenses", {})},
                    key=lambda d: (d != PRIMARY_DEFENSE, d))
  header = ["classifier", "n", "normal", "attack", "defense", "defense_clean"]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name, entry in classifiers.items():
    lines.append("| " + " | ".join([name, str(entry.get("n", ""))] + [
        _pct(entry.get(c)) for c in CONDITIONS]) + " |")
  if defenses:
    lines += ["", "## Every defense (defense on adversarial / on clean)", ""]
    header = ["classifier"] + defenses
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in classifiers.items():
      cells = []
      for d in defenses:
        values = entry.get("defenses", {}).get(d, {})
        cells.append(f"{_pct(values.get('defense'))} / {_pct(values.get('defense_clean'))}")
      lines.append("| " + " | ".join([name] + cells) + " |")
  for attack, block in results.get("attacks", {}).items():
    params = ", ".join(f"{k}={v}" for k, v in block.get("params", {}).items())
    lines += ["", f"## Attack `{attack}`" + (f" ({params})" if params else ""), ""]
    header = ["classifier", "n", "attack"] + [f"{d} defense" for d in defenses]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in block.get("classifiers", {}).items():
      cells = [_pct(entry.get("defenses", {}).get(d, {}).get("defense")) for d in defenses]
      lines.append("| " + " | ".join([name, str(entry.get("n", "")),
                                       _pct(entry.get("attack"))] + cells) + " |")
  return "\n".join(lines) + "\n"


def bar_chart(results: dict, path: str) -> None:
  """Writes a PNG bar chart: per classifier, normal / attack / each defense."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  classifiers = list(results.get("classifiers", {}))
  series = [("normal", lambda e: e.get("normal")), ("attack", lambda e: e.get("attack"))]
  defenses = sorted({d for e in results["classifiers"].values()
                     for d in e.get("defenses", {})}, key=lambda d: (d != PRIMARY_DEFENSE, d))
  for d in defenses:
    series.append((f"{d} (adv)", lambda e, d=d: e.get("defenses", {}).get(d, {}).get("defense")))
    series.append((f"{d} (clean)",
                   lambda e, d=d: e.get("defenses", {}).get(d, {}).get("defense_clean")))
  series = [(label, fn) for label, fn in series
            if any(fn(results["classifiers"][c]) is not None for c in classifiers)]
  width = 0.8 / max(len(series), 1)
  fig, ax = plt.subplots(figsize=(min(16, max(6, 0.18 * len(classifiers) * len(series) + 3)),
                                  4.5))
  x = np.arange(len(classifiers))
  colours = plt.get_cmap("tab20").colors
  for i, (label, fn) in enumerate(series):
    values = [100.0 * (fn(results["classifiers"][c]) or 0.0) for c in classifiers]
    ax.bar(x + i * width - 0.4 + width / 2, values, width, label=label,
           color=colours[i % len(colours)])
  ax.set_xticks(x)
  ax.set_xticklabels(classifiers, rotation=15)
  ax.set_ylabel("top-1 accuracy (%)")
  ax.set_ylim(0, 100)
  ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  ax.set_title("Accuracy per classifier: no defense vs defenses")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def sample_grid(columns: Sequence[np.ndarray], column_titles: Sequence[str],
                row_captions: Sequence[Sequence[str]], path: str) -> None:
  """Writes a PNG grid of images, one column per stage, captions under each image.

  Args:
    columns: Each float32 [N, H_i, W_i, 3] in [0, 1].
    column_titles: One title per column.
    row_captions: [N][len(columns)] strings (for example predicted labels).
    path: Output PNG path.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  rows = len(columns[0])
  fig, axes = plt.subplots(rows, len(columns), figsize=(2.4 * len(columns), 2.6 * rows),
                           squeeze=False)
  for r in range(rows):
    for c, column in enumerate(columns):
      ax = axes[r][c]
      ax.imshow(np.clip(column[r], 0.0, 1.0), interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(column_titles[c], fontsize=9)
      ax.set_xlabel(row_captions[r][c], fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def _write_text(path: str, text: str) -> None:
  with open(path, "w") as f:
    f.write(text)


def write_reports(results: dict, output_dir: str) -> Dict[str, str]:
  """Writes results.json, results.md and accuracy.png atomically into output_dir."""
  os.makedirs(output_dir, exist_ok=True)
  paths = {"json": os.path.join(output_dir, "results.json"),
           "markdown": os.path.join(output_dir, "results.md"),
           "chart": os.path.join(output_dir, "accuracy.png")}
  for key, writer in (("markdown", lambda p: _write_text(p, markdown_table(results))),
                      ("chart", lambda p: bar_chart(results, p)),
                      ("json", lambda p: _write_text(p, json.dumps(results, indent=2)))):
    tmp = paths[key] + ".tmp" + os.path.splitext(paths[key])[1]
    writer(tmp)
    os.replace(tmp, paths[key])
  return paths
