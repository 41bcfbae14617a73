"""The generalization table's declared rows (experiments/generalization/table.py)."""

from experiments.generalization import rows as table


def test_rows_cover_the_held_out_kinds_and_never_score_a_surrogate():
  rows = table.CIFAR_ROWS
  held_out = [r for r in rows if r.held_out]
  reasons = " ".join(r.held_out for r in held_out)
  for needed in ("surrogate", "ensemble", "algorithm", "weaker", "stronger"):
    assert needed in reasons
  for row in rows:
    scored = [p for p in table.CIFAR_TARGETS.values() if p not in row.surrogates]
    assert scored  # Every row scores someone.
    for surrogate in row.surrogates:
      assert surrogate not in scored
  # The training-mix rows use only the mix's surrogate and feature network.
  for row in rows:
    if not row.held_out:
      assert set(row.surrogates) <= set(table.VGG)


def test_markdown_has_one_line_per_row_and_target():
  entry = {"row": {"name": "pgd 8 resnet_v2", "held_out": "surrogate"},
           "perturbation": {"rmsd_255": 6.5},
           "targets": {"inception": {"normal": 85.0, "no_defense": 25.0,
                                     **{d: 40.0 for d in table.DEFENSES},
                                     **{f"{d}_clean": 50.0 for d in table.DEFENSES}}}}
  text = table.markdown({"dataset": "cifar10", "images": 20,
                         "defenses": list(table.DEFENSES), "rows": [entry]})
  lines = [l for l in text.splitlines() if l.startswith("| pgd")]
  assert lines == ["| pgd 8 resnet_v2 | surrogate | 6.50 | inception | 85.0 | 25.0 | "
                   "40.0 / 50.0 | 40.0 / 50.0 | 40.0 / 50.0 | 40.0 / 50.0 |"]
