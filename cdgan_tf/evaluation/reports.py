"""The reports evaluate.py writes: Markdown tables, the accuracy chart, the sample grid.

All read the results dict of `table.AccuracyTable.to_dict` (see `table` for its layout).
"""

from __future__ import annotations

import os
from typing import Dict, Sequence

import numpy as np

from cdgan_tf.attacks import settings
from cdgan_tf.common import files
from cdgan_tf.evaluation.table import CONDITIONS
from cdgan_tf.evaluation.table import NO_DEFENSE
from cdgan_tf.evaluation.table import PRIMARY_DEFENSE

INTERVAL_NOTE = ("Accuracies in %; `a ± h`: h is half the width of the 95 % Wilson "
                 "interval (exact bounds: `ci95` in results.json); p: two-sided exact "
                 "McNemar test on the same images.")


def _readable(key: str, value) -> str:
  """A parameter for people: budgets in 1/255 units (0.0313725... -> "8/255")."""
  if isinstance(value, float) and key in ("eps", "step_size"):
    return settings.format_eps(value)
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


def _pct(value, ci95=None) -> str:
  """A percentage; with its interval `38.0 ± 3.7` (± half the interval's width)."""
  if value is None:
    return ""
  if not ci95:
    return f"{100.0 * value:.2f}"
  return f"{100.0 * value:.1f} ± {50.0 * (ci95[1] - ci95[0]):.1f}"


def _value(entry: dict, condition: str, defense=None) -> str:
  """One accuracy of a results entry (or of one of its defenses) with its interval."""
  if defense is not None:
    entry = entry.get("defenses", {}).get(defense, {})
  return _pct(entry.get(condition), entry.get("ci95", {}).get(condition))


def _worst(entry: dict, defense: str) -> str:
  worst = entry.get("worst_case", {}).get(defense)
  if not worst:
    return ""
  return f"{_pct(worst['accuracy'], worst.get('ci95'))} ({worst['attack']})"


def _p(value) -> str:
  return "" if value is None else f"{value:.3g}"


def markdown_table(results: dict) -> str:
  """Renders results.json as Markdown tables (top-1 accuracy in %)."""
  lines = ["# Top-1 accuracy (%)", ""]
  classifiers = results.get("classifiers", {})
  defenses = sorted({d for e in classifiers.values() for d in e.get("defenses", {})},
                    key=lambda d: (d != PRIMARY_DEFENSE, d))
  with_worst = any("worst_case" in e for e in classifiers.values())
  if any("ci95" in e for e in classifiers.values()):
    lines[1:1] = ["", INTERVAL_NOTE]
  header = ["classifier", "n", "normal", "attack", "defense", "defense_clean"]
  header += ["worst case"] if with_worst else []
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name, entry in classifiers.items():
    lines.append("| " + " | ".join([name, str(entry.get("n", ""))] + [
        _value(entry, c) for c in CONDITIONS] + (
            [_worst(entry, PRIMARY_DEFENSE)] if with_worst else [])) + " |")
  if with_worst:
    lines += ["", "## Worst case (lowest adversarial accuracy over every attack run)", ""]
    header = ["classifier", NO_DEFENSE] + defenses
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in classifiers.items():
      lines.append("| " + " | ".join([name] + [_worst(entry, d) for d in
                                               [NO_DEFENSE] + defenses]) + " |")
  if defenses:
    lines += ["", "## Every defense (defense on adversarial / on clean)", ""]
    header = ["classifier"] + defenses
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in classifiers.items():
      cells = []
      for d in defenses:
        cells.append(f"{_value(entry, 'defense', d)} / {_value(entry, 'defense_clean', d)}")
      lines.append("| " + " | ".join([name] + cells) + " |")
    lines += _p_value_table(classifiers, defenses)
  for attack, block in results.get("attacks", {}).items():
    raw = block.get("params", {})
    params = ", ".join(f"{k}={_readable(k, v) if raw.get('norm') != 'l2' else f'{v:g}'}"
                       if k == "eps" else f"{k}={_readable(k, v)}" for k, v in raw.items())
    lines += ["", f"## Attack `{attack}`" + (f" ({params})" if params else ""), ""]
    header = ["classifier", "n", "attack"] + [f"{d} defense" for d in defenses]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in block.get("classifiers", {}).items():
      cells = [_value(entry, "defense", d) for d in defenses]
      lines.append("| " + " | ".join([name, str(entry.get("n", "")),
                                       _value(entry, "attack")] + cells) + " |")
    lines += _p_value_table(block.get("classifiers", {}), defenses, clean=False)
    lines += _query_table(block.get("queries", {}))
  lines += _randomized_table(results.get("randomized"))
  return "\n".join(lines) + "\n"


def _randomized_table(block) -> list:
  """Markdown lines: each randomized defense's accuracy over its random draws."""
  if not block or not block.get("accuracy"):
    return []
  transforms = "; ".join(f"{n}: {t}" for n, t in block.get("transforms", {}).items())
  lines = ["", f"## Randomized defenses ({transforms})", "",
           f"Mean ± standard deviation [min, max] over {block['draws']} random draws of "
           "the purifier on the same images; pgd_defended / bpda used EOT over "
           f"{block['eot_samples']} gradients per step.", ""]
  rows = [(d, c, a, v) for d, per in block["accuracy"].items() for c, per_attack in
          per.items() for a, v in per_attack.items()]
  attacks = list(dict.fromkeys(a for _, _, a, _ in rows))
  header = ["classifier", "defense"] + attacks
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for defense, per in block["accuracy"].items():
    for classifier, per_attack in per.items():
      cells = []
      for attack in attacks:
        v = per_attack.get(attack)
        cells.append("" if v is None else
                     f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f} "
                     f"[{100 * v['min']:.1f}, {100 * v['max']:.1f}]")
      lines.append("| " + " | ".join([classifier, defense] + cells) + " |")
  return lines


def _query_table(queries: dict):
  """Markdown lines: the query attack's queries and failure rate per target."""
  if not queries:
    return []
  lines = ["", "Queries (images correct on the clean query are attacked; mean / median "
           "over them and over those fooled):", "",
           "| classifier | defense | attacked | fooled | queries mean / median | "
           "fooled: mean / median |", "|---|---|---|---|---|---|"]
  for name, per_defense in queries.items():
    for defense, stats in per_defense.items():
      cells = [name, defense, str(stats["attacked"]), str(stats["fooled"])]
      for key in ("all", "successful"):
        mean, median = stats.get(f"mean_{key}"), stats.get(f"median_{key}")
        cells.append("" if mean is None else f"{mean:.0f} / {median:.0f}")
      lines.append("| " + " | ".join(cells) + " |")
  return lines


def _p_value_table(classifiers: dict, defenses: Sequence[str], clean: bool = True):
  """Markdown lines: each defense's McNemar p against no defense and the others."""
  if not any("p_value" in v for e in classifiers.values()
             for v in e.get("defenses", {}).values()):
    return []
  header = ["classifier", "defense", "adv. vs no defense"]
  header += ["clean vs no defense"] if clean else []
  header += [f"adv. vs {d}" for d in defenses]
  lines = ["", "Paired tests (two-sided exact McNemar p, same images):", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name, entry in classifiers.items():
    for d in defenses:
      p_value = entry.get("defenses", {}).get(d, {}).get("p_value", {})
      adversarial, on_clean = p_value.get("defense", {}), p_value.get("defense_clean", {})
      cells = [name, d, _p(adversarial.get(NO_DEFENSE))]
      cells += [_p(on_clean.get(NO_DEFENSE))] if clean else []
      cells += ["" if other == d else _p(adversarial.get(other)) for other in defenses]
      lines.append("| " + " | ".join(cells) + " |")
  return lines


def chart_rows(entry: dict):
  """(label, clean accuracy, adversarial accuracy) per bar group of one classifier.

  The first group is "no defense" (normal / attack), then CD-GAN, then the other
  defenses in name order; accuracies are fractions or None.
  """
  rows = [("no defense", entry.get("normal"), entry.get("attack"))]
  defenses = sorted(entry.get("defenses", {}), key=lambda d: (d != PRIMARY_DEFENSE, d))
  for name in defenses:
    values = entry["defenses"][name]
    rows.append((name, values.get("defense_clean"), values.get("defense")))
  return rows


def chart_intervals(entry: dict):
  """The 95 % intervals ([low, high] or None) of `chart_rows`' accuracies, row by row."""
  ci95 = entry.get("ci95", {})
  rows = [(ci95.get("normal"), ci95.get("attack"))]
  for name in sorted(entry.get("defenses", {}), key=lambda d: (d != PRIMARY_DEFENSE, d)):
    ci95 = entry["defenses"][name].get("ci95", {})
    rows.append((ci95.get("defense_clean"), ci95.get("defense")))
  return rows


def bar_chart(results: dict, path: str) -> None:
  """Writes a PNG: one panel per classifier, clean and adversarial bars side by side.

  In each panel every defense (and "no defense") has two bars, its accuracy on clean
  images and on the adversarial ones; a dashed line marks the classifier's normal
  accuracy, the level a perfect defense would keep on both.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  classifiers = list(results.get("classifiers", {}))
  if not classifiers:
    classifiers = ["(none)"]
  groups = max(len(chart_rows(results.get("classifiers", {}).get(c, {})))
               for c in classifiers)
  fig, axes = plt.subplots(1, len(classifiers), sharey=True, squeeze=False,
                           figsize=(min(18, max(6.0, 1.1 + len(classifiers) * (0.75 * groups + 0.8))),
                                    4.2))
  colours = {"clean": "#7fb3d5", "adversarial": "#c0392b"}
  for ax, name in zip(axes[0], classifiers):
    entry = results.get("classifiers", {}).get(name, {})
    rows = chart_rows(entry)
    bounds = chart_intervals(entry)
    x = np.arange(len(rows))
    for offset, (kind, column) in zip((-0.2, 0.2), (("clean", 1), ("adversarial", 2))):
      values = [100.0 * r[column] if r[column] is not None else 0.0 for r in rows]
      bars = ax.bar(x + offset, values, 0.4, color=colours[kind], label=kind)
      errors = np.maximum(0.0, [[v - 100.0 * b[column - 1][0], 100.0 * b[column - 1][1] - v]
                         if b[column - 1] else [0.0, 0.0] for v, b in zip(values, bounds)])
      errors = errors.reshape(-1, 2)
      if errors.any():  # 95 % Wilson intervals
        ax.errorbar(x + offset, values, yerr=errors.T, fmt="none", ecolor="black",
                    elinewidth=0.7, capsize=2)
      for bar, row in zip(bars, rows):
        if row[column] is not None:
          ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1,
                  f"{100.0 * row[column]:.0f}", ha="center", va="bottom", fontsize=6)
    if entry.get("normal") is not None:
      ax.axhline(100.0 * entry["normal"], color="black", linestyle="--", linewidth=0.8,
                 label="normal")
    ax.set_xticks(x)
    ax.set_xticklabels([r[0] for r in rows], rotation=35, ha="right", fontsize=8)
    for label in ax.get_xticklabels():
      if label.get_text() == PRIMARY_DEFENSE:
        label.set_fontweight("bold")
    ax.set_title(name, fontsize=10)
    ax.set_ylim(0, 105)
  axes[0][0].set_ylabel("top-1 accuracy (%)")
  axes[0][-1].legend(fontsize=7, loc="upper right")
  fig.suptitle("Clean and adversarial accuracy behind each defense"
               " (whiskers: 95 % Wilson intervals)", fontsize=11)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _curves(results: dict):
  return [(f"{attack} {name} / {defense}", stats["failure_rate"])
          for attack, block in results.get("attacks", {}).items()
          for name, per_defense in block.get("queries", {}).items()
          for defense, stats in per_defense.items() if stats.get("failure_rate")]


def query_curves(results: dict, path: str) -> bool:
  """Writes a PNG of the query attacks' failure rate vs queries (the Square paper's plot).

  One line per attack, classifier and defense (`attacks.<name>.queries` of results.json);
  the failure rate is the fraction of the images correct on their clean query that the
  attack has not yet misclassified. Returns False (and writes nothing) without them.
  """
  curves = _curves(results)
  if not curves:
    return False
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, ax = plt.subplots(figsize=(6.0, 4.0))
  for label, curve in curves:
    points = [(q, 100.0 * r) for q, r in curve if r is not None]
    if points:
      ax.plot(*zip(*points), marker="o", markersize=3, label=label)
  ax.set_xscale("log")
  ax.set_xlabel("queries per image")
  ax.set_ylabel("failure rate of the attack (%)")
  ax.set_ylim(0, 102)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return True


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


def write_reports(results: dict, output_dir: str) -> Dict[str, str]:
  """Writes results.md, accuracy.png and results.json atomically into output_dir."""
  os.makedirs(output_dir, exist_ok=True)
  paths = {"markdown": os.path.join(output_dir, "results.md"),
           "chart": os.path.join(output_dir, "accuracy.png"),
           "json": os.path.join(output_dir, "results.json")}
  files.write_text(paths["markdown"], markdown_table(results))
  with files.atomic_path(paths["chart"]) as tmp:
    bar_chart(results, tmp)
  if _curves(results):
    paths["curves"] = os.path.join(output_dir, "query_curves.png")
    with files.atomic_path(paths["curves"]) as tmp:
      query_curves(results, tmp)
  files.write_json(paths["json"], results)
  return paths
