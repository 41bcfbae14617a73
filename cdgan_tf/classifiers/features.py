"""Feature extractors for the classification-aware (feature) loss, from any classifier.

`load_feature_extractor(spec, layer)` turns a classifier spec (`registry.load_classifier`:
Keras file, SavedModel directory, TF-Hub handle, `.tflite` file) into a frozen callable
images float32 [N, H, W, 3] in [0, 1] (any size) -> features, differentiable and pure
TensorFlow (so it runs inside the training step on every replica):

  layer ""                 the classifier's scores, as its adapter returns them
                           (logits; log-probabilities for softmax models)
  layer "<name>"           Keras: the output of that layer; TFLite: that tensor of the
                           float rebuild (name or index); SavedModel / TF-Hub: only ""

Images go through the classifier's own crop, resize and value range first, as in its
adapter. A TFLite extractor uses only the float rebuild (the interpreter has no
gradients and cannot run inside the step).

The feature network must be neither an evaluated target nor the attack's surrogate,
or the defense's numbers are no longer those against an unknown attacker.
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from cdgan_tf.classifiers import base
from cdgan_tf.classifiers import registry
from cdgan_tf.classifiers import tflite


class FeatureExtractor:
  """A frozen classifier (or one of its layers) as a feature function.

  Args:
    classifier: The loaded adapter (its preprocessing is used).
    layer: "" for its scores, else a layer (Keras) or tensor (TFLite) name.

  Raises:
    ClassifierError: an unknown layer, or a layer of a source without layers.
  """

  def __init__(self, classifier: base.Classifier, layer: str = ""):
    self.classifier = classifier
    self.layer = layer
    self.name = f"{classifier.name}:{layer or 'logits'}"
    self._fn = self._build()

  def _build(self) -> Callable[[tf.Tensor], tf.Tensor]:
    c, layer = self.classifier, self.layer
    if isinstance(c, tflite.TFLiteClassifier):
      if c.rebuild is None:
        raise base.ClassifierError(f"feature extractor {c.source}: no float rebuild "
                                   f"({c.rebuild_error})")
      if not layer:
        return c.rebuilt_scores
      if layer.isdigit():  # A tensor index.
        layer = int(layer)
      try:
        c.rebuild.tensor_index(layer)
      except (KeyError, ValueError, IndexError) as e:
        raise base.ClassifierError(f"feature extractor {c.source}: no tensor {layer!r} "
                                   f"({e})") from e

      def tflite_features(images):
        inputs = c.preprocess(images)
        if c.value_range != "uint8":
          inputs = base.to_value_range(inputs, c.value_range)
        return c.rebuild.features(inputs, layer)
      return tflite_features
    if not layer:
      return c
    if not isinstance(c.trackable, keras.Model):
      raise base.ClassifierError(f"feature extractor {c.source}: layers can only be "
                                 "chosen in Keras and TFLite models; use its logits "
                                 "(no --feature_layer)")
    try:
      output = c.trackable.get_layer(layer).output
    except ValueError as e:
      names = ", ".join(l.name for l in c.trackable.layers[-8:])
      raise base.ClassifierError(f"feature extractor {c.source}: no layer {layer!r} "
                                 f"(last layers: {names})") from e
    submodel = keras.Model(c.trackable.inputs, output)

    def keras_features(images):
      inputs = base.to_value_range(c.preprocess(images), c.value_range)
      return submodel(inputs, training=False)
    return keras_features

  def __call__(self, images: tf.Tensor) -> tf.Tensor:
    """Features of float32 [N, H, W, 3] images in [0, 1]: float32 [N, ...]."""
    return tf.cast(self._fn(tf.cast(images, tf.float32)), tf.float32)


def load_feature_extractor(spec: str, layer: str = "") -> FeatureExtractor:
  """Loads the classifier `spec` and wraps it (see the module docstring).

  Raises:
    ClassifierError: the spec, the source or the layer cannot be used.
  """
  classifier = registry.load_classifier(spec)
  if isinstance(classifier.trackable, keras.Model):
    classifier.trackable.trainable = False
  return FeatureExtractor(classifier, layer)
