"""Feature extractors of the feature loss, from Keras and TFLite classifiers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.classifiers import ClassifierError
from cdgan_tf.classifiers import features
from cdgan_tf.training import losses

SIZE = 8


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
  """[N, 8, 8, 3] -> GAP ("gap") -> Dense 4 ("logits")."""
  keras.utils.set_random_seed(0)
  inputs = keras.Input((SIZE, SIZE, 3))
  pooled = keras.layers.GlobalAveragePooling2D(name="gap")(inputs)
  model = keras.Model(inputs, keras.layers.Dense(4, name="logits")(pooled))
  path = tmp_path_factory.mktemp("features") / "feature_net.keras"
  model.save(path)
  return str(path), model


def test_keras_layer_features_and_the_loss_by_hand(keras_file):
  path, model = keras_file
  extractor = features.load_feature_extractor(path, "gap")
  rng = np.random.default_rng(0)
  clean = rng.random((3, SIZE, SIZE, 3)).astype(np.float32)
  generated = rng.random((3, SIZE, SIZE, 3)).astype(np.float32)
  np.testing.assert_allclose(extractor(clean), clean.mean(axis=(1, 2)), rtol=1e-5)
  expected = np.mean((clean.mean(axis=(1, 2)) - generated.mean(axis=(1, 2))) ** 2, axis=1)
  np.testing.assert_allclose(losses.feature_loss(extractor, clean, generated), expected,
                             rtol=1e-5)
  logits = features.load_feature_extractor(path)
  np.testing.assert_allclose(logits(clean), model(clean), rtol=1e-5, atol=1e-6)
  # Other sizes are resized into the network's input, as its adapter does.
  assert extractor(np.zeros((2, 16, 16, 3), np.float32)).shape == (2, 3)
  # The gradient reaches the generated images.
  x = tf.Variable(generated)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(losses.feature_loss(extractor, clean, x))
  assert float(tf.reduce_max(tf.abs(tape.gradient(loss, x)))) > 0


def test_tflite_features_come_from_the_float_rebuild(keras_file, tmp_path):
  path, model = keras_file
  tflite_path = tmp_path / "feature_net.tflite"
  tflite_path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
  extractor = features.load_feature_extractor(str(tflite_path))
  images = np.random.default_rng(1).random((2, SIZE, SIZE, 3)).astype(np.float32)
  np.testing.assert_allclose(extractor(images), model(images), rtol=1e-4, atol=1e-5)
  with pytest.raises(ClassifierError, match="tensors are named 'nope'"):
    features.load_feature_extractor(str(tflite_path), "nope")


def test_tflite_embedding_network_without_classifier_head(shared):
  """The shared MobileNet-v1 embedding extractor ([N, 1, 1, 1024] output) as features."""
  path = shared / "models" / "tflite" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
  extractor = features.load_feature_extractor(str(path))
  images = np.random.default_rng(2).random((2, 64, 64, 3)).astype(np.float32)
  x = tf.Variable(images)
  with tf.GradientTape() as tape:
    out = extractor(x)
    loss = tf.reduce_sum(tf.square(out))
  assert out.shape == (2, 1024)
  assert float(tf.reduce_max(tf.abs(tape.gradient(loss, x)))) > 0


def test_unknown_layer_is_a_clear_error(keras_file):
  with pytest.raises(ClassifierError, match="no layer 'conv9'"):
    features.load_feature_extractor(keras_file[0], "conv9")
