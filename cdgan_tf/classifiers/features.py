"""Feature extractors for the classification-aware (feature) loss, from any classifier.

`load_feature_extractor(spec, layer)` turns a classifier spec (`registry.load_classifier`:
Keras file, SavedModel directory, TF-Hub handle, `.tflite` file) into a frozen callable
images float32 [N, H, W, 3] in [0, 1] (any size) -> features, differentiable and pure
TensorFlow (so it runs inside the training step on every replica):

  layer ""                 the classifier's scores, as its adapter returns them
                           (logits; log-probabilities for softmax models)
  layer "<name>"           Keras: the output of that layer; TFLite: that tensor of the
                           float rebuild (name or index), flattened; SavedModel /
                           TF-Hub: only ""

Images go through the classifier's own crop, resize and value range first, as in its
adapter. A `.tflite` extractor is its float rebuild alone (the interpreter has no
gradients and cannot run inside the step), so any TFLite image model serves, also one
without a classifier head (an embedding network: its output, flattened); its images are
resized (bicubic) to the model's input size and enter as the rebuild takes them (uint8
pixels for a uint8 model).

The feature network must be neither an evaluated target nor the attack's surrogate,
or the defense's numbers are no longer those against an unknown attacker.
"""

from __future__ import annotations

import os
from typing import Callable

import keras
import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.classifiers import base
from cdgan_tf.classifiers import registry
from cdgan_tf.classifiers import tflite_rebuild


class FeatureExtractor:
  """A frozen classifier (or one of its layers) as a feature function.

  Args:
    classifier: The loaded adapter (its preprocessing is used).
    layer: "" for its scores, else a Keras layer name.

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


class TFLiteFeatures:
  """The float rebuild of a `.tflite` image model as a feature function.

  Args:
    path: The .tflite file.
    layer: "" for the model's output (the logits before a final softmax), else a
      tensor name or index.

  Raises:
    ClassifierError: unsupported ops or an unknown tensor.
  """

  def __init__(self, path: str, layer: str = ""):
    try:
      self.rebuild = tflite_rebuild.TFLiteRebuild(path)
      self.tensor = (int(layer) if layer.isdigit() else layer) if layer else None
      if self.tensor is not None:
        self.rebuild.tensor_index(self.tensor)
    except tflite_rebuild.TFLiteRebuildError as e:
      raise base.ClassifierError(f"feature extractor {path}: {e}") from e
    self.name = f"{os.path.basename(path)}:{layer or 'output'}"

  def __call__(self, images: tf.Tensor) -> tf.Tensor:
    """float32 [N, H, W, 3] in [0, 1] -> float32 [N, D] (the tensor, flattened)."""
    images = tf.cast(images, tf.float32)
    if tuple(images.shape[1:3]) != tuple(self.rebuild.input_size):
      images = image_ops.resize(images, self.rebuild.input_size)
    out = (self.rebuild(images) if self.tensor is None
           else self.rebuild.features(images, self.tensor))
    return tf.reshape(tf.cast(out, tf.float32), [tf.shape(images)[0], -1])


def load_feature_extractor(spec: str, layer: str = ""):
  """Loads the feature network `spec` and wraps it (see the module docstring).

  Returns:
    A callable images float32 [N, H, W, 3] in [0, 1] -> features [N, ...].

  Raises:
    ClassifierError: the spec, the source or the layer cannot be used.
  """
  if spec.lower().endswith(".tflite"):
    if not os.path.isfile(spec):
      raise base.ClassifierError(f"feature extractor {spec} does not exist")
    return TFLiteFeatures(spec, layer)
  classifier = registry.load_classifier(spec)
  if isinstance(classifier.trackable, keras.Model):
    classifier.trackable.trainable = False
  return FeatureExtractor(classifier, layer)
