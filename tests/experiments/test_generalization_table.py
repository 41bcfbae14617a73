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


def test_validation_split_leaves_out_the_mix_training_images(tmp_path, monkeypatch):
  import types
  import numpy as np
  from PIL import Image
  from cdgan_tf.attacks import mixes
  from cdgan_tf.data import folders
  from experiments.generalization import splits as table_cmd
  root = tmp_path / "train"
  for cls in ("cat", "dog"):
    (root / cls).mkdir(parents=True)
    for i in range(5):
      Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(root / cls / f"{i}.png")
  keys = sorted(f"{cls}/{i}" for cls in ("cat", "dog") for i in range(5))
  used = folders.select_subset(keys, 3)  # What the mix trains on (smallest sha256).
  monkeypatch.setitem(mixes.MIXES, "tiny", types.SimpleNamespace(
      sources=(mixes.ImageSource("train", str(root), max_images=3),)))
  spec = {"clean_dir": str(root), "labels": None, "exclude_mix": "tiny"}
  _, images = table_cmd.split_images(spec, str(tmp_path), 4)
  got = [k for k, _, _ in images]
  assert got == folders.select_subset([k for k in keys if k not in used], 4)
  assert not set(got) & set(used)
  # Then also the first 2 of the rest (the images earlier GANs trained on).
  rest = [k for k in keys if k not in used]
  _, images = table_cmd.split_images(dict(spec, exclude_subset=2), str(tmp_path), 4)
  earlier = folders.select_subset(rest, 2)
  assert [k for k, _, _ in images] == folders.select_subset(
      [k for k in rest if k not in earlier], 4)
  # Without the exclusion the same 4-image split would contain all 3 training images.
  _, plain = table_cmd.split_images(dict(spec, exclude_mix=""), str(tmp_path), 4)
  assert set(used) <= {k for k, _, _ in plain}
  assert {l for _, _, l in images} <= {0, 1}


def test_validation_rows_use_no_target_and_no_training_attack():
  targets = set(table.CIFAR_TARGETS.values())
  for row in table.CIFAR_VAL_ROWS:
    assert set(row.surrogates) == set(table.VGG + table.DENSENET)  # An unused ensemble.
    assert not set(row.surrogates) & targets
  assert {r.kind for r in table.CIFAR_VAL_ROWS} >= {"pgd_l2"}  # Not in any mix.
  assert table.DATASETS["cifar10_val"]["exclude_mix"] == "cifar10"
  assert table.DATASETS["cifar10_val"]["exclude_subset"] == 10000  # run_cdgan.sh's.
  assert table.DATASETS["cifar10_val"]["clean_dir"].endswith("cifar10/train")
