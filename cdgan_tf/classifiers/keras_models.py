"""Keras classifiers: a `.keras` / `.h5` file, or an in-memory Keras model."""

from __future__ import annotations

import keras
import tensorflow as tf

from cdgan_tf.classifiers import base


def load_keras_file(path: str, **kwargs) -> base.Classifier:
  """Loads a `.keras` / `.h5` classifier file (see `from_keras_model` for kwargs)."""
  try:
    model = keras.models.load_model(path, compile=False)
  except Exception as e:  # pylint: disable=broad-except
    raise base.ClassifierError(
        f"could not load Keras file {path}: {type(e).__name__}: {e}") from e
  return from_keras_model(model, what=path, source=path, **kwargs)


def _keras_outputs_kind(model) -> str:
  last = model.layers[-1] if model.layers else None
  if isinstance(last, keras.layers.Softmax):
    return "probabilities"
  activation = last.get_config().get("activation") if last is not None else None
  if activation == "softmax" or getattr(activation, "__name__", "") == "softmax":
    return "probabilities"
  return "logits"


def from_keras_model(model, *, what: str, name: str, source: str, input_size,
                      value_range, num_outputs, outputs=None, **kwargs) -> base.Classifier:
  if isinstance(model.input_shape, list) or len(model.input_shape) != 4:
    raise base.ClassifierError(f"{what}: need one image input [N, H, W, 3], model takes "
                          f"{model.input_shape}")
  inferred = tuple(model.input_shape[1:3])
  input_size = base.resolve_size(input_size, None if None in inferred else inferred, what)
  if num_outputs is None:
    num_outputs = model.output_shape[-1]
    if isinstance(model.output_shape, list) or num_outputs is None:
      raise base.ClassifierError(f"{what}: need one output [N, classes], model gives "
                            f"{model.output_shape}")
  fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
  return base.Classifier(fn, name=name, input_size=input_size,
                         value_range=value_range or "0_1", num_outputs=num_outputs,
                         differentiable=True, outputs=outputs or _keras_outputs_kind(model),
                         source=source, trackable=model, **kwargs)
