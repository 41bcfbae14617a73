"""Tests of the chained purifier."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import defense
from cdgan_tf.models import generators


def _tiny_generators(scale=2):
  keras.utils.set_random_seed(0)
  sub = generators.build_sub_generator(scale=scale, num_res_blocks=1, filters=8)
  sup = generators.build_super_generator(scale=scale, num_res_blocks=1, filters=8)
  return sub, sup


@pytest.mark.parametrize("mode", defense.MODES)
@pytest.mark.parametrize("in_hw", [(16, 16), (20, 12), (7, 33)])
def test_purifier_shapes_and_range_for_any_input_size(mode, in_hw):
  sub, sup = _tiny_generators()
  purifier = defense.Purifier(sub, sup, image_size=16, scale=2, mode=mode)
  images = tf.random.uniform((3,) + in_hw + (3,), seed=1)
  resized, small, purified = purifier.stages(images)
  assert resized.shape == (3, 16, 16, 3)
  assert small.shape == (3, 8, 8, 3)
  assert purified.shape == (3, 16, 16, 3)
  assert float(tf.reduce_min(purified)) >= 0.0 and float(tf.reduce_max(purified)) <= 1.0


def test_chain_is_sub_then_super():
  sub, sup = _tiny_generators()
  purifier = defense.Purifier(sub, sup, image_size=16, scale=2)
  images = tf.random.uniform((2, 16, 16, 3), seed=2)
  expected = sup(sub(images, training=False), training=False)
  np.testing.assert_allclose(purifier(images), expected, atol=1e-6)
  # The ablations differ from the chain: each replaces one half by plain resizing.
  sub_only = defense.Purifier(sub, sup, image_size=16, scale=2, mode="sub_only")(images)
  assert float(tf.reduce_max(tf.abs(sub_only - expected))) > 1e-3


def test_purifier_is_differentiable():
  sub, sup = _tiny_generators()
  purifier = defense.Purifier(sub, sup, image_size=16, scale=2)
  images = tf.random.uniform((1, 16, 16, 3), seed=3)
  with tf.GradientTape() as tape:
    tape.watch(images)
    out = tf.reduce_sum(purifier(images))
  grad = tape.gradient(out, images)
  assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0


def test_from_files_reads_trainer_exports(tmp_path):
  sub, sup = _tiny_generators(scale=4)
  for role, model in (("sub", sub), ("super", sup)):
    export = tmp_path / role / "export"
    export.mkdir(parents=True)
    model.save(export / "generator.keras")
    (export / "generator.json").write_text(json.dumps(
        {"role": role, "scale": 4, "image_size": 32}))
  purifier = defense.Purifier.from_files(str(tmp_path / "sub"), str(tmp_path / "super"))
  assert (purifier.image_size, purifier.scale, purifier.small_size) == (32, 4, 8)
  images = tf.random.uniform((2, 40, 40, 3), seed=4)
  assert purifier(images).shape == (2, 32, 32, 3)
  # Without metadata the scale is measured from the generators themselves.
  bare = tmp_path / "bare.keras"
  sub.save(bare)
  sup_path = tmp_path / "super_bare.keras"
  sup.save(sup_path)
  measured = defense.Purifier.from_files(str(bare), str(sup_path), image_size=32)
  assert measured.scale == 4


def test_errors_name_the_problem(tmp_path):
  sub, sup = _tiny_generators()
  with pytest.raises(ValueError, match="mode"):
    defense.Purifier(sub, sup, mode="both")
  with pytest.raises(ValueError, match="super generator"):
    defense.Purifier(sub, None, image_size=16, scale=2)
  with pytest.raises(ValueError, match="divisible"):
    defense.Purifier(sub, sup, image_size=15, scale=2)
  with pytest.raises(FileNotFoundError, match="no generator"):
    defense.load_generator(str(tmp_path / "missing"))
  bad = tmp_path / "bad.keras"
  bad.write_bytes(b"not a keras file")
  with pytest.raises(ValueError, match="bad.keras"):
    defense.load_generator(str(bad))
  purifier = defense.Purifier(sub, sup, image_size=16, scale=2)
  with pytest.raises(ValueError, match="N, H, W, 3"):
    purifier(tf.zeros((16, 16, 3)))


def test_mismatched_generators_are_refused(tmp_path):
  sub2, _ = _tiny_generators(scale=2)
  _, sup4 = _tiny_generators(scale=4)
  sub2.save(tmp_path / "s.keras")
  sup4.save(tmp_path / "u.keras")
  with pytest.raises(ValueError, match="do not match"):
    defense.Purifier.from_files(str(tmp_path / "s.keras"), str(tmp_path / "u.keras"),
                                image_size=16)


def test_defended_classifier_composes():
  sub, sup = _tiny_generators()
  purifier = defense.Purifier(sub, sup, image_size=16, scale=2)

  class Fake:
    name = "fake"
    differentiable = True

    def __call__(self, images):
      return tf.reduce_mean(images, axis=[1, 2])

  defended = defense.DefendedClassifier(purifier, Fake())
  images = tf.random.uniform((2, 24, 24, 3), seed=5)
  np.testing.assert_allclose(defended(images), Fake()(purifier(images)), atol=1e-6)
  assert defended.differentiable and defended.name == "cdgan_chain+fake"
