"""Tests of the chained CD-GAN purifier and its ablations."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.defenses import base
from cdgan_tf.defenses import cdgan
from cdgan_tf.models import generator_files
from cdgan_tf.models import generators


def _tiny_generators(scale=2):
  keras.utils.set_random_seed(0)
  sub = generators.build_sub_generator(scale=scale, num_res_blocks=1, filters=8)
  sup = generators.build_super_generator(scale=scale, num_res_blocks=1, filters=8)
  return sub, sup


@pytest.mark.parametrize("mode", cdgan.MODES)
@pytest.mark.parametrize("in_hw", [(16, 16), (20, 12), (7, 33)])
def test_purifier_shapes_and_range_for_any_input_size(mode, in_hw):
  sub, sup = _tiny_generators()
  purifier = cdgan.CdganPurifier(sub, sup, image_size=16, scale=2, mode=mode)
  images = tf.random.uniform((3,) + in_hw + (3,), seed=1)
  resized, small, purified = purifier.run_stages(images)
  assert resized.shape == (3, 16, 16, 3)
  assert small.shape == (3, 8, 8, 3)
  assert purified.shape == (3, 16, 16, 3)
  assert float(tf.reduce_min(purified)) >= 0.0 and float(tf.reduce_max(purified)) <= 1.0


def _reference(mode, sub, sup, images, size=16, scale=2):
  """Each mode composed by hand from the generators and image_ops.resize."""
  resized = image_ops.resize(images, size)
  small = (image_ops.resize(resized, size // scale) if mode == "super_only"
           else sub(resized, training=False))
  purified = (image_ops.resize(small, size) if mode == "sub_only"
              else sup(small, training=False))
  return small, purified


@pytest.mark.parametrize("mode", cdgan.MODES)
def test_each_mode_equals_its_hand_composition(mode):
  sub, sup = _tiny_generators()
  purifier = cdgan.CdganPurifier(sub, sup, image_size=16, scale=2, mode=mode)
  images = tf.random.uniform((2, 20, 20, 3), seed=2)
  small, purified = _reference(mode, sub, sup, images)
  np.testing.assert_allclose(purifier(images), purified, atol=1e-6)
  stages = purifier.stages(images)
  np.testing.assert_allclose(stages[0][1], small, atol=1e-6)
  np.testing.assert_allclose(stages[-1][1], purified, atol=1e-6)
  # Every mode differs from the other two on the same input.
  for other in cdgan.MODES:
    if other != mode:
      assert float(tf.reduce_max(tf.abs(purified - _reference(other, sub, sup, images)[1]))
                   ) > 1e-3, (mode, other)


def test_purifier_declares_the_interface():
  sub, sup = _tiny_generators()
  purifier = cdgan.CdganPurifier(sub, sup, image_size=16, scale=2)
  assert isinstance(purifier, base.Purifier) and purifier.differentiable
  assert purifier.name == "cdgan"
  assert purifier.with_mode("super_only").name == "super_only"
  assert [t for t, _ in purifier.stages(tf.zeros((1, 16, 16, 3)))] == [
      "after sub G", "after super G"]


def test_purifier_is_differentiable():
  sub, sup = _tiny_generators()
  purifier = cdgan.CdganPurifier(sub, sup, image_size=16, scale=2)
  images = tf.random.uniform((1, 16, 16, 3), seed=3)
  with tf.GradientTape() as tape:
    tape.watch(images)
    out = tf.reduce_sum(purifier(images))
  grad = tape.gradient(out, images)
  assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0


def _save(model, folder, role, scale, image_size):
  info = generator_files.GeneratorInfo(role=role, scale=scale, image_size=image_size)
  generator_files.save_generator(model, info, str(folder / "export"))


def test_from_files_reads_trainer_exports(tmp_path):
  sub, sup = _tiny_generators(scale=4)
  _save(sub, tmp_path / "sub", "sub", 4, 32)
  _save(sup, tmp_path / "super", "super", 4, 32)
  info = json.loads((tmp_path / "sub" / "export" / "generator.json").read_text())
  assert (info["input_size"], info["output_size"]) == (32, 8)
  purifier = cdgan.CdganPurifier.from_files(str(tmp_path / "sub"), str(tmp_path / "super"))
  assert (purifier.image_size, purifier.scale, purifier.small_size) == (32, 4, 8)
  images = tf.random.uniform((2, 40, 40, 3), seed=4)
  assert purifier(images).shape == (2, 32, 32, 3)
  # Without metadata the scale is measured from the generators themselves.
  bare = tmp_path / "bare.keras"
  sub.save(bare)
  sup_path = tmp_path / "super_bare.keras"
  sup.save(sup_path)
  measured = cdgan.CdganPurifier.from_files(str(bare), str(sup_path), image_size=32)
  assert measured.scale == 4


def test_swapped_generators_are_named(tmp_path):
  sub, sup = _tiny_generators(scale=2)
  _save(sub, tmp_path / "sub", "sub", 2, 16)
  _save(sup, tmp_path / "super", "super", 2, 16)
  with pytest.raises(ValueError, match="holds the super generator.*swapped"):
    cdgan.CdganPurifier.from_files(str(tmp_path / "super"), str(tmp_path / "sub"))


def test_errors_name_the_problem(tmp_path):
  sub, sup = _tiny_generators()
  with pytest.raises(ValueError, match="mode"):
    cdgan.CdganPurifier(sub, sup, 16, 2, mode="both")
  with pytest.raises(ValueError, match="super generator"):
    cdgan.CdganPurifier(sub, None, image_size=16, scale=2)
  with pytest.raises(ValueError, match="divisible"):
    cdgan.CdganPurifier(sub, sup, image_size=15, scale=2)
  with pytest.raises(generator_files.GeneratorFileError, match="no generator"):
    generator_files.load_generator(str(tmp_path / "missing"))
  bad = tmp_path / "bad.keras"
  bad.write_bytes(b"not a keras file")
  with pytest.raises(ValueError, match="bad.keras"):
    generator_files.load_generator(str(bad))
  purifier = cdgan.CdganPurifier(sub, sup, image_size=16, scale=2)
  with pytest.raises(ValueError, match=r"cdgan: images must be \[N, H, W, C\]"):
    purifier(tf.zeros((16, 16, 3)))
  with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
    purifier(tf.zeros((1, 16, 16, 4)))


def test_mismatched_generators_are_refused(tmp_path):
  sub2, _ = _tiny_generators(scale=2)
  _, sup4 = _tiny_generators(scale=4)
  sub2.save(tmp_path / "s.keras")
  sup4.save(tmp_path / "u.keras")
  with pytest.raises(ValueError, match="do not match"):
    cdgan.CdganPurifier.from_files(str(tmp_path / "s.keras"), str(tmp_path / "u.keras"),
                                   image_size=16)


def test_defended_classifier_composes():
  sub, sup = _tiny_generators()
  purifier = cdgan.CdganPurifier(sub, sup, image_size=16, scale=2)

  class Fake:
    name = "fake"
    differentiable = True

    def __call__(self, images):
      return tf.reduce_mean(images, axis=[1, 2])

  defended = base.DefendedClassifier(purifier, Fake())
  images = tf.random.uniform((2, 24, 24, 3), seed=5)
  np.testing.assert_allclose(defended(images), Fake()(purifier(images)), atol=1e-6)
  assert defended.differentiable and defended.name == "cdgan+fake"


# ----------------------------------------------------------------- speed options
# bfloat16 generators: max abs pixel difference from float32 on tiny random generators
# (the shipped CIFAR-10 ones differ by up to 0.021, see README "Throughput").
BF16_PURIFIER_ATOL = 2e-2


@pytest.mark.parametrize("mode", cdgan.MODES)
def test_jit_compiled_purifier_equals_the_plain_one(mode):
  sub, sup = _tiny_generators()
  plain = cdgan.CdganPurifier(sub, sup, image_size=16, scale=2, mode=mode)
  jit = cdgan.CdganPurifier(sub, sup, image_size=16, scale=2, mode=mode, jit_compile=True)
  images = tf.random.uniform((2, 20, 12, 3), seed=3)
  np.testing.assert_allclose(jit(images), plain(images), atol=1e-5)
  # Differentiable as before (attacks take gradients through it).
  with tf.GradientTape() as tape:
    tape.watch(images)
    loss = tf.reduce_sum(jit(images))
  assert float(tf.reduce_sum(tf.abs(tape.gradient(loss, images)))) > 0


def test_bfloat16_purifier_is_close_to_float32_and_keeps_the_interface():
  sub, sup = _tiny_generators()
  plain = cdgan.CdganPurifier(sub, sup, image_size=16, scale=2)
  low = cdgan.CdganPurifier(sub, sup, image_size=16, scale=2, compute_dtype="bfloat16")
  images = tf.random.uniform((2, 16, 16, 3), seed=4)
  out, ref = low(images), plain(images)
  assert out.dtype == tf.float32 and out.shape == ref.shape
  diff = float(tf.reduce_max(tf.abs(out - ref)))
  assert 0.0 < diff < BF16_PURIFIER_ATOL
  # Options survive an ablation; the trained float32 generators are untouched.
  ablation = low.with_mode("sub_only")
  assert ablation.compute_dtype == "bfloat16" and ablation.mode == "sub_only"
  assert sub.layers[1].compute_dtype == "float32"


def test_unknown_compute_dtype_is_refused():
  sub, sup = _tiny_generators()
  with pytest.raises(ValueError, match="compute_dtype"):
    cdgan.CdganPurifier(sub, sup, image_size=16, scale=2, compute_dtype="int8")


def test_registry_passes_the_speed_options(tmp_path):
  from cdgan_tf.defenses import registry  # pylint: disable=g-import-not-at-top
  sub, sup = _tiny_generators()
  sub.save(str(tmp_path / "sub.keras"))
  sup.save(str(tmp_path / "super.keras"))
  defenses = registry.build_defenses(
      ["cdgan", "super_only"], str(tmp_path / "sub.keras"), str(tmp_path / "super.keras"),
      image_size=16, compute_dtype="bfloat16", jit_compile=True)
  for purifier in defenses.values():
    assert purifier.compute_dtype == "bfloat16" and purifier.jit_compile
  with pytest.raises(ValueError, match="exported purifier"):
    registry.load_cdgan(purifier_dir=str(tmp_path), compute_dtype="bfloat16")


@pytest.mark.parametrize("sub_geometry,differs", [((64, 2), "image_size: sub 64, super 32"),
                                                  ((32, 4), "scale: sub 4, super 2")])
def test_a_pair_trained_at_other_geometries_is_refused_naming_both(tmp_path, sub_geometry,
                                                                   differs):
  """The generators' recorded geometry must agree, even where the tensors would fit."""
  size, scale = sub_geometry
  sub, _ = _tiny_generators(scale=scale)
  _, sup = _tiny_generators(scale=2)
  _save(sub, tmp_path / "sub", "sub", scale, size)
  _save(sup, tmp_path / "super", "super", 2, 32)
  with pytest.raises(ValueError, match=f"generators do not match: {differs}"):
    cdgan.CdganPurifier.from_files(str(tmp_path / "sub"), str(tmp_path / "super"))
