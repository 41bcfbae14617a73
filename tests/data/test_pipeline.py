"""Tests of the tf.data input pipeline on small records written here."""

import json

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import config
from cdgan_tf import image_ops
from cdgan_tf.data import features
from cdgan_tf.common import errors
from cdgan_tf.data import pipeline


def _png(image: np.ndarray) -> bytes:
  return tf.io.encode_png(tf.constant(image, tf.uint8)).numpy()


def _write(path, pairs):
  """Writes (adversarial uint8 [H, W, 3], clean uint8 [H, W, 3]) pairs to one file."""
  with tf.io.TFRecordWriter(str(path)) as writer:
    for i, (adversarial, clean) in enumerate(pairs):
      writer.write(features.make_example(
          _png(adversarial), adversarial.shape[:2], _png(clean), clean.shape[:2],
          label=i, file_name=f"{path.name}-{i}").SerializeToString())
  return str(path)


def _noise(rng, h, w):
  return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _constant(value, h=20, w=20):
  return np.full((h, w, 3), value, np.uint8)


@pytest.fixture
def noise_records(tmp_path):
  """Two shards of 3 records each: random adversarial and clean images of varied sizes."""
  rng = np.random.default_rng(0)
  for shard in range(2):
    _write(tmp_path / f"train-{shard:05d}-of-00002.tfrecord",
           [(_noise(rng, 36, 36), _noise(rng, 40, 30)) for _ in range(3)])
  return str(tmp_path / "train-*.tfrecord")


@pytest.fixture
def twin_records(tmp_path):
  """One shard of 4 records where adversarial == clean (random noise)."""
  rng = np.random.default_rng(1)
  pairs = []
  for _ in range(4):
    image = _noise(rng, 24, 24)
    pairs.append((image, image))
  return _write(tmp_path / "twins.tfrecord", pairs)


def _cfg(pattern, **kwargs):
  defaults = dict(train_pattern=pattern, val_pattern=pattern, image_size=16, scale=4,
                  batch_size=2, shuffle_buffer=8)
  defaults.update(kwargs)
  return config.DataConfig(**defaults)


def _take(ds, n):
  return [(a.numpy(), c.numpy()) for a, c in ds.take(n)]


@pytest.mark.parametrize("role", ["sub", "super"])
@pytest.mark.parametrize("image_size,scale", [(16, 2), (16, 4), (32, 4)])
@pytest.mark.parametrize("training", [True, False])
def test_shapes_and_ranges(noise_records, role, image_size, scale, training):
  cfg = _cfg(noise_records, image_size=image_size, scale=scale, batch_size=3)
  ds = pipeline.build_dataset(cfg, role, training=training)
  large, small = (3, image_size, image_size, 3), (3, image_size // scale,
                                                   image_size // scale, 3)
  expected = (large, small) if role == "sub" else (small, large)
  if training:
    # Static batch dimension from drop_remainder=True.
    assert tuple(ds.element_spec[0].shape) == expected[0]
    assert tuple(ds.element_spec[1].shape) == expected[1]
  for adversarial, clean in _take(ds, 2):
    assert (adversarial.shape, clean.shape) == expected
    for array in (adversarial, clean):
      assert array.dtype == np.float32
      # Not constant (antialiased downscaling of noise tends to grey, hence the small bound).
      assert array.min() >= 0.0 and array.max() <= 1.0 and array.std() > 0.01


@pytest.mark.parametrize("role", ["sub", "super"])
def test_augmentation_keeps_pairs_aligned(twin_records, role):
  cfg = _cfg(twin_records, image_size=16, scale=4, batch_size=4)
  augmented = _take(pipeline.train_dataset(cfg, role), 3)
  for adversarial, clean in augmented:
    large, small = (adversarial, clean) if role == "sub" else (clean, adversarial)
    np.testing.assert_allclose(image_ops.resize(large, 4), small, atol=1e-5)
  # The augmentation really moves the window: outputs differ from the plain resize of
  # every record (so the check above is not trivially about identical images).
  plain = _take(pipeline.build_dataset(
      _cfg(twin_records, image_size=16, scale=4, batch_size=4, augment=False), role,
      training=True), 1)[0]
  plain_large = plain[0] if role == "sub" else plain[1]
  aug_large = np.concatenate([a if role == "sub" else c for a, c in augmented])
  distances = np.abs(aug_large[:, None] - plain_large[None]).mean(axis=(2, 3, 4))
  assert distances.min(axis=1).max() > 0.02


def test_crop_comes_from_a_1_125_resize(tmp_path):
  # A horizontal ramp: the crop of a 1.125x resize spans 1/1.125 of the ramp.
  ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8)[None, :, None], (64, 1, 3))
  pattern = _write(tmp_path / "ramp.tfrecord", [(ramp, ramp)])
  cfg = _cfg(pattern, image_size=32, scale=2, batch_size=1)
  adversarial, _ = _take(pipeline.train_dataset(cfg, "sub"), 1)[0]
  row = adversarial[0, 16, :, 0]
  span = abs(row[-1] - row[0])
  assert 0.75 < span < 0.95  # 1/1.125 = 0.89 of the full 0..1 ramp (minus edges)
  assert pipeline.crop_source_size(256) == 288


def test_determinism_for_the_same_seed(noise_records):
  def batches(seed):
    cfg = _cfg(noise_records, batch_size=2, deterministic=True)
    return _take(pipeline.train_dataset(cfg, "sub", seed=seed), 4)

  first, second, other = batches(7), batches(7), batches(8)
  for (a1, c1), (a2, c2) in zip(first, second):
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(c1, c2)
  assert any(not np.array_equal(a1, a2) for (a1, _), (a2, _) in zip(first, other))


def test_sharding_splits_files(tmp_path):
  # 4 files of one constant colour each; two input pipelines must see disjoint halves.
  colours = [20, 80, 140, 200]
  for i, colour in enumerate(colours):
    _write(tmp_path / f"train-{i:05d}-of-00004.tfrecord",
           [(_constant(colour), _constant(colour))])
  pattern = str(tmp_path / "train-*.tfrecord")
  cfg = _cfg(pattern, batch_size=2, shuffle_buffer=1, deterministic=True)
  seen = []
  for pipeline_id in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2,
                                         input_pipeline_id=pipeline_id,
                                         num_replicas_in_sync=2)
    ds = pipeline.train_dataset(cfg, "super", input_context=context)
    assert tuple(ds.element_spec[0].shape)[0] == 1  # per-replica batch: 2 / 2
    values = {int(round(float(c.mean()) * 255)) for _, c in _take(ds, 2)}
    seen.append(values)
  assert len(seen[0]) == 2 and len(seen[1]) == 2
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(colours)


def test_too_few_files_for_the_pipelines(twin_records):
  context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0,
                                       num_replicas_in_sync=2)
  with pytest.raises(ValueError, match="fewer than the 2 input pipelines"):
    pipeline.build_dataset(_cfg(twin_records), "sub", training=True,
                           input_context=context)


def test_eval_is_sorted_unshuffled_and_keeps_the_remainder(tmp_path):
  # Written in reverse name order; read back in sorted file order, record order kept.
  for name, colours in [("val-b.tfrecord", [120, 160]), ("val-a.tfrecord", [40, 80]),
                        ("val-c.tfrecord", [200])]:
    _write(tmp_path / name, [(_constant(c), _constant(c)) for c in colours])
  cfg = _cfg("", val_pattern=str(tmp_path / "val-*.tfrecord"), batch_size=2)
  ds = pipeline.eval_dataset(cfg, "sub")
  batches = _take(ds, 10)
  assert [a.shape[0] for a, _ in batches] == [2, 2, 1]
  order = [int(round(float(a[i].mean()) * 255)) for a, _ in batches
           for i in range(a.shape[0])]
  assert order == [40, 80, 120, 160, 200]
  context = tf.distribute.InputContext(2, 1, 2)
  shard = _take(pipeline.eval_dataset(cfg, "sub", input_context=context), 10)
  assert [int(round(float(a[0].mean()) * 255)) for a, _ in shard] == [80, 160]


def test_bad_inputs_name_the_problem(tmp_path, twin_records):
  missing = str(tmp_path / "nothing-*.tfrecord")
  with pytest.raises(ValueError, match="nothing-"):
    pipeline.train_dataset(_cfg(missing), "sub")
  with pytest.raises(ValueError, match="nothing-"):
    pipeline.count_examples(missing)
  with pytest.raises(ValueError, match="val_pattern"):
    pipeline.eval_dataset(_cfg(twin_records, val_pattern=""), "sub")
  with pytest.raises(ValueError, match="role"):
    pipeline.train_dataset(_cfg(twin_records), "middle")
  # An explicit pattern overrides the config's.
  ds = pipeline.eval_dataset(_cfg(missing), "sub", pattern=twin_records)
  assert sum(int(a.shape[0]) for a, _ in ds) == 4


def test_count_examples_with_and_without_manifest(noise_records, tmp_path):
  assert pipeline.count_examples(noise_records) == 6
  (tmp_path / "manifest.json").write_text(json.dumps({"counts": {"train": 1000}}))
  assert pipeline.count_examples(noise_records) == 1000  # read, not counted
  # Only some shards of the split: the manifest's total would be wrong, so count.
  assert pipeline.count_examples(str(tmp_path / "train-00001-*")) == 3
  (tmp_path / "manifest.json").write_text("not json")
  assert pipeline.count_examples(noise_records) == 6


def test_globs_joined_by_commas_read_both_sets(noise_records, tmp_path):
  """Two record sets (folders with their own manifests) read as one: every record once,
  counted per folder, and a glob that matches nothing is named."""
  other = tmp_path / "other"
  other.mkdir()
  _write(other / "train-00000-of-00001.tfrecord", [(_constant(7), _constant(9))] * 2)
  (other / "manifest.json").write_text(json.dumps({"counts": {"train": 2}}))
  both = f"{noise_records},{other / 'train-*'}"
  assert len(pipeline.match_files(both)) == 3
  assert pipeline.count_examples(both) == 6 + 2
  assert pipeline.count_examples(f"{noise_records},{noise_records}") == 6  # once each
  inputs = np.concatenate([a.numpy() for a, _ in pipeline.eval_dataset(
      _cfg(both, image_size=16, scale=2), "sub", pattern=both)])
  assert inputs.shape[0] == 8
  constant = [np.allclose(x, 7 / 255, atol=1e-6) for x in inputs]
  assert sum(constant) == 2  # The other folder's two records are in the set.
  cfg = _cfg(both, image_size=16, scale=2, batch_size=8, augment=False)
  (inputs, _), = _take(pipeline.train_dataset(cfg, "sub"), 1)
  assert inputs.shape[0] == 8  # The training pipeline reads both sets too.
  seen = 0
  for inputs, _ in _take(pipeline.train_dataset(cfg, "sub"), 4):  # 4 epochs' worth.
    seen += sum(np.allclose(x, 7 / 255, atol=1e-6) for x in inputs)
  assert seen >= 4
  with pytest.raises(errors.UsageError, match="nope"):
    pipeline.match_files(f"{noise_records},{tmp_path / 'nope-*'}")


def _share_of_constant(cfg, batches):
  """Fraction of the training inputs that are the constant-7 records."""
  inputs = np.concatenate([a for a, _ in _take(pipeline.train_dataset(cfg, "sub"), batches)])
  return float(np.mean([np.allclose(x, 7 / 255, atol=1e-6) for x in inputs]))


def test_train_shares_set_each_globs_share_of_the_draws(noise_records, tmp_path):
  """6 noise records next to 2 constant ones: read together, the constant ones are a
  quarter of the draws; with shares (1, 3) three quarters, with (1, 1) half."""
  other = tmp_path / "other"
  other.mkdir()
  _write(other / "train-00000-of-00001.tfrecord", [(_constant(7), _constant(9))] * 2)
  both = f"{noise_records},{other / 'train-*'}"
  kwargs = dict(image_size=16, scale=2, batch_size=16, augment=False)
  plain = _share_of_constant(_cfg(both, **kwargs), 25)  # 400 draws
  assert 0.18 < plain < 0.32
  three_quarters = _share_of_constant(_cfg(both, train_shares=(1, 3), **kwargs), 25)
  assert 0.68 < three_quarters < 0.82
  half = _share_of_constant(_cfg(both, train_shares=("0.5", "0.5"), **kwargs), 25)
  assert 0.42 < half < 0.58
  # The draw is seeded: the same seed gives the same batches.
  cfg = _cfg(both, train_shares=(1, 3), deterministic=True, **kwargs)
  first, second = (_take(pipeline.train_dataset(cfg, "sub", seed=3), 3) for _ in range(2))
  for (a, _), (b, _) in zip(first, second):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(errors.UsageError, match="2 values for the 1 globs"):
    pipeline.train_dataset(cfg, "sub", pattern=noise_records)


@pytest.mark.parametrize("shares,message", [((1,), "1 values for the 2 globs"),
                                            ((1, 0), "must be > 0"),
                                            (("a", 1), "expected numbers")])
def test_bad_train_shares_name_the_problem(noise_records, shares, message):
  with pytest.raises(errors.UsageError, match=message):
    _cfg(f"{noise_records},{noise_records}", train_shares=shares)


@pytest.mark.parametrize("role", ["sub", "super"])
@pytest.mark.parametrize("fraction,batch,expected", [(0.25, 8, 2), (0.5, 4, 2), (0.3, 5, 2)])
def test_clean_pairs_fill_the_requested_share_of_every_batch(tmp_path, role, fraction,
                                                              batch, expected):
  """Adversarial images are black and clean ones random: a clean pair is one whose input
  is not black, and its input is its own target, prepared as the role prepares inputs."""
  rng = np.random.default_rng(2)
  pattern = _write(tmp_path / "train-00000-of-00001.tfrecord",
                   [(_constant(0, 16, 16), _noise(rng, 16, 16)) for _ in range(6)])
  cfg = _cfg(pattern, image_size=16, scale=2, batch_size=batch, augment=False,
             clean_pair_fraction=fraction)
  assert pipeline.clean_pair_count(cfg, batch) == expected
  for inputs, targets in _take(pipeline.train_dataset(cfg, role), 3):
    clean = [bool(np.any(x > 0)) for x in inputs]
    assert clean == [True] * expected + [False] * (batch - expected)
    small_of = (lambda x: image_ops.resize(x, 8).numpy())  # noqa: E731
    if role == "sub":  # input = clean at 16, target = clean at 8
      np.testing.assert_allclose(small_of(inputs[:expected]), targets[:expected], atol=1e-6)
    else:  # input = clean at 8, target = clean at 16
      np.testing.assert_allclose(inputs[:expected], small_of(targets[:expected]), atol=1e-6)


def test_no_clean_pairs_by_default_and_large_inputs_for_chained_training(noise_records):
  cfg = _cfg(noise_records, image_size=16, scale=2, batch_size=3)
  assert pipeline.clean_pair_count(cfg, 3) == 0
  inputs, targets = _take(pipeline.build_dataset(cfg, "super", training=True,
                                                 large_input=True), 1)[0]
  assert inputs.shape == (3, 16, 16, 3) and targets.shape == (3, 16, 16, 3)
  with pytest.raises(ValueError, match="super role only"):
    pipeline.train_dataset(cfg, "sub", large_input=True)


def test_start_step_skips_the_batches_already_trained_on(noise_records):
  cfg = _cfg(noise_records, batch_size=2, deterministic=True)
  full = _take(pipeline.train_dataset(cfg, "sub", seed=3), 5)
  resumed = _take(pipeline.train_dataset(cfg, "sub", seed=3, start_step=2), 3)
  for (a1, c1), (a2, c2) in zip(full[2:], resumed):
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(c1, c2)


def _coordinates(h, w):
  """uint8 [H, W, 3]: R = column ramp, G = row ramp, B = 128 (where a pixel came from)."""
  cols = np.linspace(0, 255, w)[None, :].repeat(h, 0)
  rows = np.linspace(0, 255, h)[:, None].repeat(w, 1)
  return np.round(np.stack([cols, rows, np.full((h, w), 128.0)], -1)).astype(np.uint8)


@pytest.mark.parametrize("adv_size", [48, 96])
def test_scaled_crop_and_flip_land_identically_on_both_sides(tmp_path, adv_size):
  """augment_min_scale < 1: the same random window, scale and flip on both sides.

  Clean is a coordinate image, adversarial its negative (at the same or twice the
  size), so any window or flip taken differently breaks adversarial == 1 - clean.
  """
  clean = _coordinates(48, 48)
  adversarial = 255 - _coordinates(adv_size, adv_size)
  pattern = _write(tmp_path / "coords.tfrecord", [(adversarial, clean)] * 4)
  cfg = _cfg(pattern, image_size=16, scale=1, batch_size=4, augment_min_scale=0.5,
             deterministic=True)
  batches = _take(pipeline.train_dataset(cfg, "sub", seed=3), 6)
  spans, flips = [], []
  for adv, cln in batches:
    np.testing.assert_allclose(adv, 1.0 - cln, atol=0.02)
    red = cln[..., 0]  # Column ramp: its range is the window's width, its slope the flip.
    spans += list((red.max(axis=(1, 2)) - red.min(axis=(1, 2))))
    flips += list(red[:, :, -1].mean(axis=1) < red[:, :, 0].mean(axis=1))
  spans = np.array(spans)
  # crop_and_resize puts the first and last output pixels on the window's edges, so a
  # window of relative side s spans s of the ramp: s ~ U(0.5, 1).
  assert spans.min() > 0.5 - 0.02 and spans.max() < 1.0 + 1e-6
  assert spans.max() - spans.min() > 0.2  # The scale really varies.
  assert 0 < sum(flips) < len(flips)  # Some flipped, some not.


def test_min_scale_one_keeps_the_default_crop(noise_records):
  a = _take(pipeline.build_dataset(_cfg(noise_records, deterministic=True), "sub",
                                   training=True, seed=1), 2)
  b = _take(pipeline.build_dataset(_cfg(noise_records, deterministic=True,
                                        augment_min_scale=1.0), "sub",
                                   training=True, seed=1), 2)
  for (a1, a2), (b1, b2) in zip(a, b):
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
  with pytest.raises(ValueError, match="augment_min_scale"):
    _cfg(noise_records, augment_min_scale=0.0)
