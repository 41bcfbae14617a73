"""TFLite export of the CD-GAN purifier (float32, float16 or dynamic-range int8).

For mobile users of MobileNet-class classifiers: the chain (resize -> sub G -> super G)
as one `.tflite` flatbuffer at a fixed input size, the interpreter's natural form.

  float32   the graph as is
  float16   weights stored as float16 (half the size); computed in float32 (or float16
            where the delegate supports it)
  int8      dynamic-range quantization: weights int8 (a quarter of the size),
            activations quantized per call by the hybrid kernels

TFLite has no ScaleAndTranslate (the antialiased bicubic resize), so the generators are
rebuilt with their image-skip resizes as matrix products (`models.inference`) and the
input resize, when the input size is not the purifier's working size, is
`inference.matrix_resize` (the project's one resize in that form).

Input and output: float32 [batch, input_size, input_size, 3] in [0, 1] ->
float32 [batch, S, S, 3] in [0, 1], S the purifier's working size (paper: 256).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from cdgan_tf.classifiers import tflite_runner
from cdgan_tf.common import checks
from cdgan_tf.common import errors
from cdgan_tf.common import files
from cdgan_tf.common import native_logs
from cdgan_tf.defenses import cdgan as cdgan_lib
from cdgan_tf.models import inference

QUANTIZATIONS = ("float32", "float16", "int8")


class _ChainModule(tf.Module):
  """The purifier chain with static-size (matrix) resizes, traced at a fixed shape."""

  def __init__(self, purifier: cdgan_lib.CdganPurifier):
    super().__init__(name="tflite_purifier")
    if purifier.mode != "chain":
      raise errors.UsageError(f"TFLite export takes the CD-GAN chain, not mode {purifier.mode}")
    sub, sup = purifier.trained_generators
    self.sub = inference.inference_copy(sub, "float32", matrix_resizes=True)
    self.super = inference.inference_copy(sup, "float32", matrix_resizes=True)
    self.image_size = purifier.image_size

  def __call__(self, images: tf.Tensor) -> tf.Tensor:
    if images.shape[1] != self.image_size or images.shape[2] != self.image_size:
      images = inference.matrix_resize(images, self.image_size)
    small = tf.cast(self.sub(images, training=False), tf.float32)
    purified = tf.cast(self.super(small, training=False), tf.float32)
    return tf.clip_by_value(purified, 0.0, 1.0)


def convert(purifier: cdgan_lib.CdganPurifier, quantization: str = "float16",
            input_size: Optional[int] = None, batch_size: int = 1) -> bytes:
  """The purifier as a TFLite flatbuffer.

  Args:
    purifier: A `CdganPurifier` in "chain" mode (its float32 generators are used,
      whatever its compute_dtype).
    quantization: "float32", "float16" or "int8" (dynamic range).
    input_size: The fixed input side (default: the purifier's working size).
    batch_size: The fixed batch of the model.

  Returns:
    The .tflite bytes.

  Raises:
    ValueError: an unknown quantization, a non-chain purifier, or sizes < 1.
  """
  checks.check_choice("quantization", quantization, QUANTIZATIONS)
  input_size = int(input_size or purifier.image_size)
  if input_size < 1 or batch_size < 1:
    raise errors.UsageError(f"input_size {input_size} and batch_size {batch_size} must be >= 1")
  module = _ChainModule(purifier)
  concrete = tf.function(module.__call__).get_concrete_function(
      tf.TensorSpec([batch_size, input_size, input_size, 3], tf.float32, name="images"))
  # Weights frozen into constants: Keras 3 variables would otherwise stay resource
  # variables that the interpreter never initializes (NaN outputs).
  frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
  converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], module)
  if quantization != "float32":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantization == "float16":
    converter.target_spec.supported_types = [tf.float16]
  with native_logs.silenced():
    return converter.convert()


def export_tflite(purifier: cdgan_lib.CdganPurifier, path: str,
                  quantization: str = "float16", input_size: Optional[int] = None,
                  batch_size: int = 1, overwrite: bool = False) -> str:
  """Writes `convert(...)` to `path` atomically. Returns the path.

  Raises:
    FileExistsError: `path` exists and not `overwrite`.
  """
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} exists (pass overwrite / --overwrite to replace it)")
  content = convert(purifier, quantization, input_size, batch_size)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  with files.atomic_path(path) as tmp, open(tmp, "wb") as f:
    f.write(content)
  return path


class TFLitePurifierRunner:
  """Runs an exported purifier .tflite on numpy batches (any batch, chunked).

  Args:
    model_content: The .tflite bytes.
    num_threads: Interpreter threads (default: TFLite's).
  """

  def __init__(self, model_content: bytes, num_threads: Optional[int] = None):
    interpreter_cls, _ = tflite_runner.interpreter_api()
    with native_logs.silenced():
      self.interpreter = interpreter_cls(model_content=model_content,
                                         num_threads=num_threads)
      self.interpreter.allocate_tensors()
    self.input = self.interpreter.get_input_details()[0]
    self.output = self.interpreter.get_output_details()[0]
    self.batch = int(self.input["shape"][0])
    self.input_size = int(self.input["shape"][1])

  def __call__(self, images: np.ndarray) -> np.ndarray:
    """float32 [N, input_size, input_size, 3] in [0, 1] -> [N, S, S, 3] in [0, 1]."""
    images = np.asarray(images, np.float32)
    if tuple(images.shape[1:]) != (self.input_size, self.input_size, 3):
      raise errors.UsageError(f"the TFLite purifier takes [N, {self.input_size}, "
                              f"{self.input_size}, 3], got {images.shape}")
    outputs = []
    for start in range(0, len(images), self.batch):
      chunk = images[start:start + self.batch]
      pad = self.batch - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], np.float32)])
      self.interpreter.set_tensor(self.input["index"], chunk)
      self.interpreter.invoke()
      outputs.append(self.interpreter.get_tensor(self.output["index"])[:len(chunk) - pad])
    return np.concatenate(outputs)
