"""Tests of `PurifierLayer`: values, the Keras model round trip, the saved source."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import cdgan_tf
from cdgan_tf import image_ops
from cdgan_tf.defenses import baselines
from cdgan_tf.defenses import cdgan
from cdgan_tf.models import generators
from cdgan_tf.serving import saving


def _tiny_purifier():
  keras.utils.set_random_seed(0)
  sub = generators.build_sub_generator(scale=2, num_res_blocks=1, filters=8)
  sup = generators.build_super_generator(scale=2, num_res_blocks=1, filters=8)
  return cdgan.CdganPurifier(sub, sup, image_size=16, scale=2)


def _tiny_classifier(size=12):
  keras.utils.set_random_seed(1)
  return keras.Sequential([keras.Input((size, size, 3)), keras.layers.Conv2D(4, 3),
                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])


def test_layer_equals_purifier_then_resize_then_classifier():
  purifier, classifier = _tiny_purifier(), _tiny_classifier()
  images = tf.random.uniform((3, 20, 14, 3), seed=2)
  layer = cdgan_tf.PurifierLayer(purifier, output_size=12)
  expected = classifier(image_ops.resize(purifier(images), 12))
  model = keras.Sequential([keras.Input((None, None, 3)), layer, classifier])
  np.testing.assert_allclose(model(images), expected, atol=1e-5)
  assert layer.compute_output_shape((None, 20, 14, 3)) == (None, 12, 12, 3)
  # Without output_size: the purifier's working size.
  plain = cdgan_tf.PurifierLayer(purifier)
  np.testing.assert_allclose(plain(images), purifier(images), atol=1e-6)


def test_saved_model_loads_back_with_the_same_outputs(tmp_path):
  purifier, classifier = _tiny_purifier(), _tiny_classifier()
  inputs = keras.Input((None, None, 3))
  outputs = classifier(cdgan_tf.PurifierLayer(purifier, output_size=12)(inputs))
  model = keras.Model(inputs, outputs)  # the functional API
  images = tf.random.uniform((2, 24, 24, 3), seed=3)
  before = model(images).numpy()
  path = str(tmp_path / "defended.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  np.testing.assert_allclose(loaded(images), before, atol=1e-6)
  # The generators travel in the file: other weights give other outputs.
  layer = [l for l in loaded.layers if isinstance(l, cdgan_tf.PurifierLayer)][0]
  assert layer.purifier.sub_generator is layer.sub_generator
  layer.sub_generator.set_weights([w * 0.5 for w in layer.sub_generator.get_weights()])
  assert np.abs(loaded(images).numpy() - before).max() > 1e-3


def test_a_saved_model_purifier_is_recorded_by_path(tmp_path):
  exported = saving.export_purifier(_tiny_purifier(), str(tmp_path / "purifier"),
                                    overwrite=True)
  model = keras.Sequential([keras.Input((16, 16, 3)), cdgan_tf.PurifierLayer(exported)])
  images = tf.random.uniform((1, 16, 16, 3), seed=4)
  model.save(str(tmp_path / "m.keras"))
  loaded = keras.models.load_model(str(tmp_path / "m.keras"))
  np.testing.assert_allclose(loaded(images), model(images), atol=1e-6)
  assert loaded.layers[0].get_config()["purifier"] == exported


def test_unsaveable_and_low_precision_purifiers_are_refused():
  layer = cdgan_tf.PurifierLayer(baselines.make_baseline("jpeg75", image_size=16, scale=2))
  with pytest.raises(ValueError, match="give it as a path"):
    layer.get_config()
  low = _tiny_purifier()
  low = cdgan.CdganPurifier(*low.trained_generators, 16, 2, compute_dtype="bfloat16")
  with pytest.raises(ValueError, match="float32"):
    cdgan_tf.PurifierLayer(low)
