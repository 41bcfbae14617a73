"""The generalization table's declared rows (experiments/generalization/table.py)."""

import pytest

from cdgan_tf.attacks import mix_set
from cdgan_tf.attacks import mixes
from cdgan_tf.data import folders
from experiments.generalization import rows as table
from experiments.generalization import splits


@pytest.mark.parametrize("dataset, mix_surrogates", [("cifar10", table.VGG),
                                                    ("imagenet", table.V1_075)])
def test_rows_cover_the_held_out_kinds_and_never_score_a_surrogate(dataset,
                                                                   mix_surrogates):
  spec = table.DATASETS[dataset]
  rows, targets = spec["rows"], spec["targets"]
  held_out = [r for r in rows if r.held_out]
  reasons = " ".join(r.held_out for r in held_out)
  for needed in ("surrogate", "ensemble", "algorithm", "weaker", "stronger"):
    assert needed in reasons
  for row in rows:
    scored = [p for p in targets.values() if p not in row.surrogates]
    assert scored  # Every row scores someone.
    for surrogate in row.surrogates:
      assert surrogate not in scored
  # The training-mix rows use only the mix's surrogate and feature network, and the
  # mix's own networks are never targets.
  mix = mixes.MIXES[dataset]
  for row in rows:
    if not row.held_out:
      assert set(row.surrogates) <= set(mix_surrogates)
  mix_networks = {s for a in mix.attacks for group in a.surrogates for s in group}
  mix_networks |= {a.feature_network for a in mix.attacks if a.feature_network}
  mix_networks = {mixes.resolve_spec(s, "{shared}", "weights") for s in mix_networks}
  assert set(mix_surrogates) <= mix_networks
  assert not mix_networks & set(targets.values())


@pytest.mark.shared
def test_imagenet_table_images_are_the_test_split_outside_the_mix(shared):
  """The table's images are evaluate.py's `--max_images=650` subset of the val sample,
  and none of them is a training image of the imagenet mix."""
  spec = table.DATASETS["imagenet"]
  clean_dir, images = splits.split_images(spec, str(shared), 650)
  keys = {key for key, _, _ in images}
  listed, _ = folders.list_labelled_images(
      clean_dir, f"{shared}/datasets/imagenet_val_sample/val.txt")
  assert keys == set(folders.select_subset([k for k, _, _ in listed], 650))
  trained = {key.split("/", 1)[1] for source in mixes.MIXES["imagenet"].sources
             for key, _, _ in mix_set.list_source(source, str(shared), "weights")[0]}
  assert len(keys) == 650 and not keys & trained
  assert spec["crop"] == "damagenet" and "--crop=damagenet" in spec["evaluate_flags"]


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


def test_mix_val_split_keeps_only_the_records_held_out_images(tmp_path, monkeypatch):
  import types
  import numpy as np
  from PIL import Image
  from tfrecords_builder import builder
  root = tmp_path / "photos"
  root.mkdir()
  for i in range(40):
    Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(root / f"p{i:02d}.png")
  (root / "labels.txt").write_text("".join(f"p{i:02d}.png {i % 3}\n" for i in range(40)))
  source = mixes.ImageSource("photos", str(root), str(root / "labels.txt"),
                             exclude_test_subset=10)
  monkeypatch.setitem(mixes.MIXES, "tiny", types.SimpleNamespace(sources=(source,)))
  spec = {"clean_dir": str(root), "labels": str(root / "labels.txt"),
          "mix_val": ("tiny", "photos", 0.3)}
  _, images = splits.split_images(spec, str(tmp_path), 1000)
  keys = [f"p{i:02d}" for i in range(40)]
  test = set(folders.select_subset(keys, 10))
  # By hand: "<source>/<key>" hashed as mix_records.pack splits at --val_fraction=0.3.
  expected = sorted(k for k in keys if k not in test
                    and builder.split_of(f"photos/{k}", 0.3) == "val")
  assert [k for k, _, _ in images] == expected and 5 <= len(expected) <= 16
  assert [l for k, _, l in images] == [int(k[1:]) % 3 for k in expected]
  assert not set(expected) & test
  # A lower fraction holds out a subset of these (the split hash is monotone in it).
  _, fewer = splits.split_images(dict(spec, mix_val=("tiny", "photos", 0.1)),
                                 str(tmp_path), 1000)
  assert {k for k, _, _ in fewer} < set(expected)


@pytest.mark.shared
def test_imagenet_validation_is_outside_the_test_split_and_the_training_records(shared):
  from tfrecords_builder import builder
  spec = table.DATASETS["imagenet_val"]
  _, images = splits.split_images(spec, str(shared), 100000)
  keys = {k for k, _, _ in images}
  _, test = splits.split_images(table.DATASETS["imagenet"], str(shared), 650)
  assert not keys & {k for k, _, _ in test}
  assert all(builder.split_of(f"val/{k}", table.IMAGENET_VAL_FRACTION) == "val"
             for k in keys)
  assert 90 <= len(keys) <= 170  # About 0.2 of the 650 non-test val images.
  for row in table.IMAGENET_VAL_ROWS:  # Attacks no training pair used, no target.
    assert row.surrogates == table.V1_075 and row.held_out.startswith("validation")
    assert row.kind == "pgd_l2" or row.steps == 40
