"""TFLite classifiers: the real interpreter computes what is reported (uint8 pixels in,
as deployed); a float rebuild of the same graph supplies gradients.

The interpreter has no gradients. When the model's ops are supported
(`tflite_rebuild.TFLiteRebuild`: weights dequantized, activations clamped to their
quantized ranges), the adapter is differentiable: its forward values are still the
interpreter's, and its gradient is the rebuild's gradient of the same scores at the
same input (logits before the softmax, through the same crop and resize). Attacks then
run on `.tflite` files and are scored by the real interpreter. Models with unsupported
ops stay forward-only, and `rebuild_error` says why.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from cdgan_tf.classifiers import base
from cdgan_tf.classifiers import tflite_rebuild
from cdgan_tf.classifiers import tflite_runner

GRADIENT_SOURCE = "float rebuild of the TFLite graph"


class TFLiteClassifier(base.Classifier):
  """A classifier whose scores come from the TFLite interpreter.

  Args:
    runner: The `tflite_runner.TFLiteRunner` (interpreter, quantization, batching).
    rebuild: The float rebuild that supplies gradients, or None (forward-only).
    rebuild_error: Why there is no rebuild ("" when there is one).
    **kwargs: `base.Classifier` arguments (name, input_size, value_range, ...).

  Attributes:
    runner, rebuild, rebuild_error: As given.
  """

  def __init__(self, runner: tflite_runner.TFLiteRunner,
               rebuild: Optional[tflite_rebuild.TFLiteRebuild] = None,
               rebuild_error: str = "", **kwargs):
    def forward(x):
      y = tf.numpy_function(runner, [x], tf.float32, stateful=True)
      y.set_shape([x.shape[0], runner.num_outputs])
      return y

    super().__init__(forward, num_outputs=runner.num_outputs,
                     differentiable=rebuild is not None, **kwargs)
    self.runner = runner
    self.rebuild = rebuild
    self.rebuild_error = rebuild_error
    if rebuild is not None:
      self.gradient_source = GRADIENT_SOURCE

  @property
  def interpreter(self):
    return self.runner.interpreter

  def rebuilt_scores(self, images: tf.Tensor) -> tf.Tensor:
    """The rebuild's scores (differentiable): the same crop, resize and label mapping.

    Args:
      images: float32 [N, H, W, 3] in [0, 1].

    Returns:
      float32 [N, num_classes]: logits, or log-softmax for a softmax model (as
      `__call__` returns log-probabilities for it).
    """
    inputs = self.preprocess(images)
    if self.value_range != "uint8":  # The rebuild rounds uint8 pixels itself.
      inputs = base.to_value_range(inputs, self.value_range)
    logits = tf.cast(self.rebuild(inputs), tf.float32)
    if self.outputs == "probabilities":
      logits = tf.nn.log_softmax(logits, axis=-1)
    return logits[:, self.label_offset:]

  def __call__(self, images: tf.Tensor) -> tf.Tensor:
    """Interpreter scores [N, num_classes]; gradients (if any) from the rebuild."""
    images = self._check_images(images)
    if self.rebuild is None:
      return super().__call__(images)

    @tf.custom_gradient
    def scores(x):
      def grad(upstream):
        with tf.GradientTape() as tape:
          tape.watch(x)
          approximation = self.rebuilt_scores(x)
        return tape.gradient(approximation, x, output_gradients=upstream)
      return self._scores(x), grad

    return scores(images)


def _rebuild(path: str, runner: tflite_runner.TFLiteRunner, value_range: str):
  """(rebuild, "") or (None, why not)."""
  if np.issubdtype(runner.input_dtype, np.integer) and value_range != "uint8":
    return None, (f"the rebuild takes uint8 pixels; value_range={value_range!r} feeds "
                  "this integer-input model otherwise")
  try:
    return tflite_rebuild.TFLiteRebuild(path), ""
  except tflite_rebuild.TFLiteRebuildError as e:
    return None, str(e)


class FloatRebuildClassifier(base.Classifier):
  """The float rebuild of a TFLite classifier as a classifier of its own.

  Its scores are `quantized.rebuilt_scores` (dequantized weights, float activations
  clamped to their quantized ranges; the same crop, resize and label mapping), with
  exact gradients: a float target whose scores do not come in the interpreter's 1/256
  steps, for query attacks (issue 19) and white-box checks. `registry.load_classifier`
  gives one for the spec "float:<file>.tflite".

  Args:
    quantized: The interpreter's classifier, with a rebuild.

  Raises:
    base.ClassifierError: the model has no rebuild (`quantized.rebuild_error`).
  """

  def __init__(self, quantized: TFLiteClassifier):
    if quantized.rebuild is None:
      raise base.ClassifierError(f"{quantized.source}: no float rebuild "
                                 f"({quantized.rebuild_error})")
    super().__init__(quantized.rebuilt_scores, name=f"{quantized.name}_float",
                     input_size=quantized.input_size, value_range="0_1",
                     num_outputs=quantized.num_classes, differentiable=True,
                     label_offset=0, crop_fraction=quantized.crop_fraction,
                     resize_method=quantized.resize_method,
                     source=f"float:{quantized.source}")
    self.quantized = quantized
    self.gradient_source = "exact (float rebuild of the TFLite graph)"

  def _scores(self, images: tf.Tensor) -> tf.Tensor:
    return self._model_fn(images)  # rebuilt_scores crops, resizes and maps labels.


def load_tflite(path: str, *, name: str, input_size, value_range, num_outputs,
                outputs=None, num_threads=None, gradients: bool = True,
                float_scores: bool = False, **kwargs) -> base.Classifier:
  """Loads a `.tflite` image classifier (see `registry.load_classifier` for the args).

  Args:
    gradients: Build the float rebuild for gradients (False: forward-only).
    float_scores: Return the float rebuild as the classifier (`FloatRebuildClassifier`).
  """
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
  rebuild, why = _rebuild(path, runner, value_range) if gradients or float_scores else (
      None, "gradients not requested")
  quantized = TFLiteClassifier(runner, rebuild, why, name=name, input_size=input_size,
                               value_range=value_range, outputs=outputs, source=path,
                               **kwargs)
  return FloatRebuildClassifier(quantized) if float_scores else quantized
