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
from cdgan_tf.evaluation.table import PRIMARY_DEFENSE


def _readable(key: str, value) -> str:
  """A parameter for people: budgets in 1/255 units (0.0313725... -> "8/255")."""
  if isinstance(value, float) and key in ("eps", "step_size"):
    return settings.format_eps(value)
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


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
    params = ", ".join(f"{k}={_readable(k, v)}" for k, v in block.get("params", {}).items())
    lines += ["", f"## Attack `{attack}`" + (f" ({params})" if params else ""), ""]
    header = ["classifier", "n", "attack"] + [f"{d} defense" for d in defenses]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in block.get("classifiers", {}).items():
      cells = [_pct(entry.get("defenses", {}).get(d, {}).get("defense")) for d in defenses]
      lines.append("| " + " | ".join([name, str(entry.get("n", "")),
                                       _pct(entry.get("attack"))] + cells) + " |")
  return "\n".join(lines) + "\n"


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
    x = np.arange(len(rows))
    for offset, (kind, column) in zip((-0.2, 0.2), (("clean", 1), ("adversarial", 2))):
      values = [100.0 * r[column] if r[column] is not None else 0.0 for r in rows]
      bars = ax.bar(x + offset, values, 0.4, color=colours[kind], label=kind)
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
  fig.suptitle("Clean and adversarial accuracy behind each defense", fontsize=11)
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


def write_reports(results: dict, output_dir: str) -> Dict[str, str]:
  """Writes results.md, accuracy.png and results.json atomically into output_dir."""
  os.makedirs(output_dir, exist_ok=True)
  paths = {"markdown": os.path.join(output_dir, "results.md"),
           "chart": os.path.join(output_dir, "accuracy.png"),
           "json": os.path.join(output_dir, "results.json")}
  files.write_text(paths["markdown"], markdown_table(results))
  with files.atomic_path(paths["chart"]) as tmp:
    bar_chart(results, tmp)
  files.write_json(paths["json"], results)
  return paths
