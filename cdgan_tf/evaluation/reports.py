"""The reports evaluate.py writes: Markdown tables, the accuracy chart, the sample grid.

All read the results dict of `table.AccuracyTable.to_dict` (see `table` for its layout).
"""

from __future__ import annotations

import os
from typing import Dict, Sequence

import numpy as np

from cdgan_tf.common import files
from cdgan_tf.evaluation.table import CONDITIONS
from cdgan_tf.evaluation.table import PRIMARY_DEFENSE


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
