"""Every classifier source honours the crop, resize and range options by value.

The same position-sensitive linear model (logits = flatten(x) @ W over an 8x8 input)
is saved as a Keras file, a TF-Hub-style SavedModel, a signature SavedModel and a float
TFLite file; each is loaded with a central crop, a non-default resize method and the
[-1, 1] range, and must give the logits computed by hand on a 24x24 image whose answer
depends on all three (each option left out gives other logits).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import classifiers
from cdgan_tf import image_ops

SIZE, OUTPUTS = 8, 5
RNG = np.random.default_rng(3)
KERNEL = RNG.normal(size=(SIZE * SIZE * 3, OUTPUTS)).astype(np.float32)
IMAGES = RNG.random((2, 24, 24, 3)).astype(np.float32)
OPTIONS = dict(crop_fraction=0.5, resize_method="bilinear", value_range="-1_1")


def _forward(x):
  return tf.reshape(x, (-1, SIZE * SIZE * 3)) @ tf.constant(KERNEL)


def by_hand(crop=0.5, method="bilinear", value_range="-1_1"):
  x = tf.constant(IMAGES)
  if crop < 1.0:
    side = int(round(24 * crop))
    start = (24 - side) // 2
    x = x[:, start:start + side, start:start + side, :]
  x = image_ops.resize(x, SIZE, method=method)
  if value_range == "-1_1":
    x = x * 2.0 - 1.0
  return _forward(x).numpy()


def _module():
  module = tf.Module()
  module.kernel = tf.Variable(KERNEL)
  return module


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
  d = tmp_path_factory.mktemp("sources")
  inputs = keras.Input((SIZE, SIZE, 3))
  outputs = keras.layers.Dense(OUTPUTS, use_bias=False)(keras.layers.Flatten()(inputs))
  model = keras.Model(inputs, outputs)
  model.layers[-1].set_weights([KERNEL])
  model.save(str(d / "probe.keras"))

  hub = _module()
  hub.__call__ = tf.function(
      lambda images: tf.reshape(images, (-1, SIZE * SIZE * 3)) @ hub.kernel,
      input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
  tf.saved_model.save(hub, str(d / "hub"))

  signature = _module()
  serve = tf.function(
      lambda images: {"logits": tf.reshape(images, (-1, SIZE * SIZE * 3))
                      @ signature.kernel},
      input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
  tf.saved_model.save(signature, str(d / "signature"), signatures={"serving_default": serve})

  lite = _module()
  call = tf.function(lambda images: tf.reshape(images, (-1, SIZE * SIZE * 3)) @ lite.kernel,
                     input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)])
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [call.get_concrete_function()], lite)
  (d / "probe.tflite").write_bytes(converter.convert())
  return {"keras": str(d / "probe.keras"), "hub": str(d / "hub"),
          "signature": str(d / "signature"), "tflite": str(d / "probe.tflite")}


def test_the_image_depends_on_every_option():
  expected = by_hand()
  for wrong in (by_hand(crop=1.0), by_hand(method="bicubic"), by_hand(value_range="0_1")):
    assert np.abs(wrong - expected).max() > 0.05


@pytest.mark.parametrize("kind", ["keras", "hub", "signature", "tflite"])
def test_each_source_honours_crop_resize_and_range(sources, kind):
  clf = classifiers.load_classifier(sources[kind], **OPTIONS)
  assert clf.input_size == (SIZE, SIZE) and clf.num_classes == OUTPUTS
  np.testing.assert_allclose(clf(tf.constant(IMAGES)).numpy(), by_hand(), atol=1e-4)
