"""TFLite classifiers: the real interpreter computes what is reported (uint8 pixels in,
as deployed)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cdgan_tf.classifiers import base
from cdgan_tf.classifiers import tflite_runner


class TFLiteClassifier(base.Classifier):
  """A classifier whose scores come from the TFLite interpreter.

  Attributes:
    runner: The `tflite_runner.TFLiteRunner` (interpreter, quantization, batching).
  """

  def __init__(self, runner: tflite_runner.TFLiteRunner, **kwargs):
    def forward(x):
      y = tf.numpy_function(runner, [x], tf.float32, stateful=True)
      y.set_shape([x.shape[0], runner.num_outputs])
      return y

    super().__init__(forward, num_outputs=runner.num_outputs, **kwargs)
    self.runner = runner

  @property
  def interpreter(self):
    return self.runner.interpreter


def load_tflite(path: str, *, name: str, input_size, value_range, num_outputs,
                outputs=None, num_threads=None, **kwargs) -> TFLiteClassifier:
  """Loads a `.tflite` image classifier (see `registry.load_classifier` for the args)."""
  try:
    runner = tflite_runner.TFLiteRunner(path, num_threads)
  except ValueError as e:
    raise base.ClassifierError(str(e)) from e
  input_size = base.resolve_size(input_size, runner.input_size, f"TFLite file {path}")
  is_uint8 = runner.input_dtype == np.uint8
  value_range = value_range or ("uint8" if is_uint8 else "0_1")
  if value_range == "uint8" and not is_uint8:
    raise base.ClassifierError(f"TFLite file {path}: value_range='uint8' needs a "
                               f"uint8-input model, this one takes {runner.input_dtype.name}")
  if num_outputs is not None and int(num_outputs) != runner.num_outputs:
    raise base.ClassifierError(f"TFLite file {path}: num_outputs={num_outputs} differs "
                               f"from the model's {runner.num_outputs}")
  if outputs is None:
    softmax = tflite_runner.output_is_softmax(runner.model_content,
                                              runner.output["index"])
    outputs = "probabilities" if softmax else "logits"
  return TFLiteClassifier(runner, name=name, input_size=input_size,
                          value_range=value_range, differentiable=False, outputs=outputs,
                          source=path, **kwargs)
