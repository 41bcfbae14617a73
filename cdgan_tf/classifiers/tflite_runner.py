"""Runs a TFLite model on numpy batches: quantization, batching, softmax detection.

Used by `cdgan_tf.classifiers.tflite` for the forward pass of TFLite classifiers. The interpreter is
`ai_edge_litert.interpreter.Interpreter` when the ai-edge-litert package is installed,
else the deprecated `tf.lite.Interpreter`.
"""

from __future__ import annotations

import threading
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from cdgan_tf.common import errors
from cdgan_tf.common import native_logs


def interpreter_api():
  """(Interpreter class, OpResolverType enum) from ai-edge-litert, else tf.lite."""
  try:
    from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
    return litert.Interpreter, litert.OpResolverType
  except ImportError:
    return tf.lite.Interpreter, tf.lite.experimental.OpResolverType


def output_is_softmax(model_content: bytes, output_index: int) -> bool:
  """Whether the op that produces tensor `output_index` is SOFTMAX.

  Checked on an interpreter without the default (XNNPACK) delegate, which would
  otherwise hide the ops inside one DELEGATE node.
  """
  interpreter_cls, resolver = interpreter_api()
  try:
    plain = interpreter_cls(
        model_content=model_content,
        experimental_op_resolver_type=resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    for op in plain._get_ops_details():  # pylint: disable=protected-access
      if output_index in list(op["outputs"]):
        return op["op_name"] == "SOFTMAX"
  except Exception:  # pylint: disable=broad-except
    pass
  return False


class TFLiteRunner:
  """One single-input, single-output TFLite image model, callable on numpy batches.

  Attributes:
    interpreter: The allocated interpreter.
    model_content: The flatbuffer bytes.
    input, output: The interpreter's tensor details (dtype, shape, quantization).
    batch: The model's fixed batch size; larger batches run in chunks of it.
    input_size: (height, width), or None when the model's spatial size is dynamic.
    num_outputs: Width of the output.
  """

  def __init__(self, path: str, num_threads: Optional[int] = None):
    """Loads `path`.

    Raises:
      ValueError: the file cannot be read or is not a [N, H, W, 3] -> [N, K] model.
    """
    try:
      with open(path, "rb") as f:
        self.model_content = f.read()
      interpreter_cls, _ = interpreter_api()
      with native_logs.silenced():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
        self.interpreter = interpreter_cls(model_content=self.model_content,
                                           num_threads=num_threads)
        self.interpreter.allocate_tensors()
    except Exception as e:  # pylint: disable=broad-except
      raise errors.UsageError(f"could not load TFLite file {path}: {type(e).__name__}: {e}") from e
    inputs = self.interpreter.get_input_details()
    outputs = self.interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
      raise errors.UsageError(f"TFLite file {path}: need one input and one output, has "
                              f"{len(inputs)} and {len(outputs)}")
    self.input, self.output = inputs[0], outputs[0]
    shape = self.input["shape"]
    if len(shape) != 4 or shape[-1] != 3 or len(self.output["shape"]) != 2:
      raise errors.UsageError(f"TFLite file {path}: shapes {shape.tolist()} -> "
                              f"{self.output['shape'].tolist()} are not [N, H, W, 3] -> [N, K]")
    self.batch = int(shape[0])
    signature = self.input.get("shape_signature", shape)
    self.input_size: Optional[Tuple[int, int]] = (
        None if min(signature[1:3]) < 1 else (int(shape[1]), int(shape[2])))
    self.num_outputs = int(self.output["shape"][-1])
    self._lock = threading.Lock()

  @property
  def input_dtype(self) -> np.dtype:
    return np.dtype(self.input["dtype"])

  def quantize(self, x: np.ndarray) -> np.ndarray:
    """Float values in the model's real input range -> its input dtype.

    Inputs already of the input dtype (e.g. uint8 pixels) pass unchanged.
    """
    if x.dtype == self.input_dtype:
      return x
    scale, zero_point = self.input["quantization"]
    if np.issubdtype(self.input_dtype, np.integer) and scale:
      info = np.iinfo(self.input_dtype)
      x = np.clip(np.round(x / scale + zero_point), info.min, info.max)
    return x.astype(self.input_dtype)

  def dequantize(self, y: np.ndarray) -> np.ndarray:
    """Raw outputs -> float32 real values ((q - zero_point) * scale when quantized)."""
    scale, zero_point = self.output["quantization"]
    if np.issubdtype(y.dtype, np.integer) and scale:
      return (y.astype(np.float32) - zero_point) * np.float32(scale)
    return y.astype(np.float32)

  def __call__(self, x: np.ndarray) -> np.ndarray:
    """Runs a batch [N, H, W, 3] (any N) and returns float32 [N, num_outputs]."""
    x = self.quantize(np.asarray(x))
    n = x.shape[0]
    results = [np.zeros([0, self.num_outputs], np.float32)]
    with self._lock:  # One interpreter: tf.data may call from several threads.
      for start in range(0, n, self.batch):
        chunk = x[start:start + self.batch]
        count = chunk.shape[0]
        if count < self.batch:
          chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - count, 0)])
        self.interpreter.set_tensor(self.input["index"], chunk)
        self.interpreter.invoke()
        output = self.interpreter.get_tensor(self.output["index"])
        results.append(self.dequantize(output)[:count])
    return np.concatenate(results, axis=0)
