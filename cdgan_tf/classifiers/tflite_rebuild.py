"""A differentiable float rebuild of a (quantized) TFLite image model.

The TFLite interpreter computes what a deployed model reports but has no gradients.
`TFLiteRebuild` reads the `.tflite` flatbuffer itself (not the interpreter, whose
XNNPACK delegate hides the ops), dequantizes every constant to float32 and re-expresses
the graph with TensorFlow ops (`tflite_ops`), so the same model can be attacked,
used as a feature network or as a surrogate under `tf.GradientTape`:

  model = TFLiteRebuild("mobilenet_v2_1.0_224_quant.tflite")
  logits = model(images)               # float32 [N, 224, 224, 3] in [0, 1] -> [N, 1001]
  emb = model.features(images, "MobilenetV2/Logits/AvgPool")   # any tensor, by name/index

What the rebuild computes, for a quantized model, is the real value of every tensor
(q - zero_point) * scale, with
  * the input quantized as the interpreter sees it: a uint8-input model gets the pixels
    q = round(255 * x) (int8 input: round(255 * x) - 128), with a straight-through
    gradient for the rounding; a float-input model gets x itself (which value range
    a float model expects is the caller's concern: see `input_dtype` and
    `input_quantization`);
  * weights and biases dequantized per tensor or per channel (int32 biases with their
    own scales; float16 constants, also behind DEQUANTIZE ops, widened to float32);
  * every quantized op output clamped to the real range its 8/16-bit type can hold,
    so outputs without a fused activation saturate as in the interpreter;
  * with `fake_quant=True`, every quantized op output also rounded onto its grid (a
    straight-through gradient), which follows the interpreter more closely on narrow
    models; without it (the default) the function is piecewise smooth and its tape
    gradient is its true derivative.
The batch size is dynamic although the flatbuffer fixes one (usually 1).

Supported ops: `tflite_ops.SUPPORTED_OPS`; fused NONE / RELU / RELU_N1_TO_1 / RELU6. Any
other op raises `TFLiteRebuildError` naming the op(s) and the file, when the model is
loaded. Only the first subgraph of a one-input, one-output model is rebuilt.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from . import tflite_ops
from .tflite_graph import Graph, Operator, read_graph
from .tflite_quant import dequantize, TensorInfo, TFLiteRebuildError

__all__ = ["Graph", "Operator", "TFLiteRebuild", "TFLiteRebuildError", "TensorInfo",
           "dequantize", "read_graph"]
TensorRef = Union[str, int]

# Ops that pass a value on unchanged: walked back through from the graph output to find
# a final SOFTMAX (e.g. SOFTMAX -> QUANTIZE(int8 -> uint8) in full-integer models).
_PASS_THROUGH = ("QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE")


def _module_name(path: str) -> str:
  name = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
  return name if re.match(r"[A-Za-z_]", name) else f"tflite_{name}"


class TFLiteRebuild(tf.Module):
  """A TFLite image model as differentiable TensorFlow ops (see the module docstring).

  Attributes:
    path: The `.tflite` file.
    fake_quant: Whether quantized activations are rounded onto their grid.
    merge_clamps: Whether RELU / RELU6 and their output's clamp run as one op
      (`tflite_ops.OpContext.activation`; same values up to float32 rounding; False
      is the slower reference, for benchmarks).
    input_size: (height, width) of the model input.
    input_channels: Channels of the model input (3 for RGB).
    input_dtype: The flatbuffer input type (np.uint8, np.int8 or np.float32).
    input_quantization: (scale, zero_point) of a quantized input, else None.
    output_tensor: TensorInfo of the graph output (e.g. uint8 probabilities).
    ends_in_softmax: Whether the output is a SOFTMAX (possibly re-quantized or
      reshaped after it); the logits are then its input.
    logits_tensor: Name of the tensor `__call__` returns: the softmax input, else the
      graph output.
    num_outputs: Width of `__call__`'s output (size of the logits tensor per example,
      e.g. 1001, or 1024 for an embedding [1, 1, 1, 1024]).
  """

  def __init__(self, path: Union[str, os.PathLike], *, fake_quant: bool = False,
               name: Optional[str] = None, merge_clamps: bool = True):
    """Reads `path` and builds the float graph (weights become non-trainable variables).

    Raises:
      TFLiteRebuildError: unreadable file, unsupported op or fused activation (the
        message names the op(s) and the file), or not a one-input [N, H, W, C] model.
    """
    graph = read_graph(path)
    super().__init__(name=name or _module_name(graph.path))
    self._graph = graph
    self.path = graph.path
    self.fake_quant = bool(fake_quant)
    self.merge_clamps = bool(merge_clamps)
    where = f"TFLite file {self.path}"
    unsupported = sorted({op.name for op in graph.operators} - set(tflite_ops.BUILDERS))
    if unsupported:
      raise TFLiteRebuildError(
          f"{where}: op(s) {', '.join(unsupported)} not supported by the float rebuild "
          f"(supported: {', '.join(tflite_ops.SUPPORTED_OPS)})")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
      raise TFLiteRebuildError(f"{where}: need one input and one output, has "
                               f"{len(graph.inputs)} and {len(graph.outputs)}")
    self.input_tensor = graph.tensors[graph.inputs[0]]
    if len(self.input_tensor.shape) != 4:
      raise TFLiteRebuildError(f"{where}: input shape {list(self.input_tensor.shape)} is "
                               "not [N, H, W, C]")
    _, height, width, self.input_channels = self.input_tensor.shape
    self.input_size = (height, width)
    self.input_dtype = self.input_tensor.dtype
    self.input_quantization = (
        (float(self.input_tensor.scale[0]), int(self.input_tensor.zero_point[0]))
        if self.input_tensor.quantized else None)
    self._weights: Dict[str, tf.Variable] = {}
    self._functions: Dict[str, Any] = {}
    self._saturated: set = set()
    self._ops, self._producer = self._build(graph, where)
    self.output_tensor = graph.tensors[graph.outputs[0]]
    self._logits_index, self.ends_in_softmax = self._find_logits(self.output_tensor.index)
    logits = graph.tensors[self._logits_index]
    self.logits_tensor = logits.name
    self.num_outputs = int(np.prod(logits.shape[1:], dtype=np.int64))

  def _build(self, graph: Graph, where: str):
    """Builder functions in execution order, and {tensor index: position}."""
    tensors = graph.tensors  # DEQUANTIZE of a constant is folded into a constant here.
    ops, producer = [], {}
    for op in graph.operators:
      what = f"operator {op.index} ({op.name}) of {where}"
      if len(op.outputs) != 1:
        raise TFLiteRebuildError(f"{what}: has {len(op.outputs)} outputs, expected 1")
      inputs = [tensors[i] if i >= 0 else None for i in op.inputs]
      if op.name == "DEQUANTIZE" and inputs[0].is_constant:
        out = tensors[op.outputs[0]]
        tensors[out.index] = dataclasses.replace(out, dtype=np.dtype(np.float32), scale=None,
                                                 zero_point=None, raw=inputs[0].value())
        continue
      for info in inputs:
        if (info is not None and not info.is_constant and info.index not in producer and
            info.index != self.input_tensor.index):
          raise TFLiteRebuildError(f"{what}: input tensor {info.index} ({info.name!r}) is "
                                   "not computed by an earlier operator")
      context = tflite_ops.OpContext(op.name, op.options, inputs,
                                     [tensors[op.outputs[0]]], self._make_weight, what,
                                     fake_quant=self.fake_quant,
                                     merge_clamps=self.merge_clamps)
      producer[op.outputs[0]] = len(ops)
      ops.append((op, tflite_ops.BUILDERS[op.name](context)))
      if context.saturated:  # Its activation already clamps it (OpContext.activation).
        self._saturated.add(op.outputs[0])
    return ops, producer

  def _find_logits(self, index: int) -> Tuple[int, bool]:
    while index in self._producer:
      op = self._ops[self._producer[index]][0]
      if op.name == "SOFTMAX":
        return op.inputs[0], True
      if op.name not in _PASS_THROUGH:
        break
      index = op.inputs[0]
    return self.output_tensor.index, False

  def _make_weight(self, info: TensorInfo, tag: str, value: np.ndarray) -> tf.Variable:
    key = f"t{info.index}_{tag}"
    if key not in self._weights:
      with self.name_scope:
        self._weights[key] = tf.Variable(value, trainable=False, name=key)
    return self._weights[key]

  @property
  def graph(self) -> Graph:
    """The parsed flatbuffer (tensors, operators in execution order); read only."""
    return self._graph

  @property
  def op_names(self) -> List[str]:
    """Builtin names of the flatbuffer's operators, in execution order."""
    return [op.name for op in self._graph.operators]

  @property
  def tensor_names(self) -> List[str]:
    """Tensor names; position i is tensor index i (the interpreter's index too)."""
    return [t.name for t in self._graph.tensors]

  def tensor_index(self, tensor: TensorRef) -> int:
    """Index of a tensor given by name or index.

    Raises:
      TFLiteRebuildError: no such tensor, or a name shared by several tensors.
    """
    count = len(self._graph.tensors)
    if isinstance(tensor, (int, np.integer)) and not isinstance(tensor, bool):
      if not 0 <= int(tensor) < count:
        raise TFLiteRebuildError(f"{self.path}: tensor index {tensor} not in [0, {count})")
      return int(tensor)
    matches = [i for i, t in enumerate(self._graph.tensors) if t.name == tensor]
    if len(matches) != 1:
      raise TFLiteRebuildError(f"{self.path}: {len(matches)} tensors are named {tensor!r} "
                               "(see tensor_names)")
    return matches[0]

  def tensor_info(self, tensor: TensorRef) -> TensorInfo:
    """Shape, type, quantization (and raw value of constants) of a tensor."""
    return self._graph.tensors[self.tensor_index(tensor)]

  def constant(self, tensor: TensorRef) -> np.ndarray:
    """Dequantized float32 value of a constant tensor, in the flatbuffer's layout (conv
    filters [out, h, w, in], depthwise [1, h, w, out], FC weights [out, in]); integer
    constants (shapes, axes) as stored."""
    info = self.tensor_info(tensor)
    if not info.is_constant:
      raise TFLiteRebuildError(f"{self.path}: tensor {info.index} ({info.name!r}) is not a "
                               "constant")
    return info.value()

  def __repr__(self) -> str:
    return (f"TFLiteRebuild({self.path!r}, input_size={self.input_size}, "
            f"input_dtype={self.input_dtype.name}, num_outputs={self.num_outputs}, "
            f"ends_in_softmax={self.ends_in_softmax}, fake_quant={self.fake_quant})")

  def input_values(self, images: tf.Tensor) -> tf.Tensor:
    """The real value of the graph input for float32 images in [0, 1].

    Integer-input models: q = round(255 * clip(x, 0, 1)) + min of the type (0 for uint8,
    -128 for int8), straight-through gradient; then (q - zero_point) * scale. Float
    models: x unchanged. Returns float32, same shape.
    """
    x = tf.cast(images, tf.float32)
    if not np.issubdtype(self.input_dtype, np.integer):
      return x
    pixels = tflite_ops.straight_through(tf.clip_by_value(x, 0.0, 1.0) * 255.0, tf.round)
    q = pixels + float(np.iinfo(self.input_dtype).min)
    if self.input_quantization is None:
      return q
    scale, zero_point = self.input_quantization
    return (q - float(zero_point)) * scale

  def _check_images(self, images) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_floating:
      raise TFLiteRebuildError(f"{self.path}: expects float32 images in [0, 1], got dtype "
                               f"{images.dtype.name}")
    expected = [*self.input_size, self.input_channels]
    shape = images.shape
    if shape.rank is not None and (shape.rank != 4 or any(
        s is not None and s != e for s, e in zip(shape[1:], expected))):
      raise TFLiteRebuildError(f"{self.path}: expects images [N, {expected[0]}, "
                               f"{expected[1]}, {expected[2]}], got {shape.as_list()}")
    return tf.cast(images, tf.float32)

  def _run(self, indices: Tuple[int, ...], images: tf.Tensor) -> List[tf.Tensor]:
    needed, plan = set(indices), []
    for op, fn in reversed(self._ops):
      if op.outputs[0] in needed:
        plan.append((op, fn))
        needed.update(i for i in op.inputs if i >= 0)
    values = {self.input_tensor.index: self.input_values(images)}
    for op, fn in reversed(plan):
      out = self._graph.tensors[op.outputs[0]]
      value = fn([values.get(i) for i in op.inputs])
      values[out.index] = (value if out.index in self._saturated else
                           tflite_ops.saturate(value, out, self.fake_quant))
    return [values[i] for i in indices]

  def _compiled(self, indices: Tuple[int, ...]):
    key = ",".join(map(str, indices))
    if key not in self._functions:
      spec = tf.TensorSpec([None, *self.input_size, self.input_channels], tf.float32)
      # A partial (not a lambda): tf.function counts retracing per code object.
      self._functions[key] = tf.function(functools.partial(self._run, indices),
                                         input_signature=[spec])
    return self._functions[key]

  def __call__(self, images: tf.Tensor) -> tf.Tensor:
    """Logits of a batch.

    Args:
      images: float32 [N, H, W, C] in [0, 1] at `input_size`; any N.

    Returns:
      float32 [N, num_outputs]: the softmax input when `ends_in_softmax`, else the graph
      output, flattened per example (real values, saturated to their quantized range).
    """
    (logits,) = self._compiled((self._logits_index,))(self._check_images(images))
    return tf.reshape(logits, [-1, self.num_outputs])

  def features(self, images: tf.Tensor,
               tensors: Union[TensorRef, Sequence[TensorRef]]):
    """Values of any computed tensors (e.g. an embedding or an intermediate layer).

    Args:
      images: As for `__call__`.
      tensors: A tensor name or index, or a sequence of them (see `tensor_names`); the
        graph input and every op output qualify, constants do not (see `constant`).

    Returns:
      float32 real values with the flatbuffer's shape except a dynamic batch: one tensor
      for one name, else a list in the same order.

    Raises:
      TFLiteRebuildError: unknown or constant tensor, or bad images.
    """
    single = isinstance(tensors, (str, int, np.integer))
    indices = tuple(self.tensor_index(t) for t in ([tensors] if single else tensors))
    for index in indices:
      if index != self.input_tensor.index and index not in self._producer:
        raise TFLiteRebuildError(f"{self.path}: tensor {index} "
                                 f"({self._graph.tensors[index].name!r}) is not computed by "
                                 "the graph (a constant?)")
    values = self._compiled(indices)(self._check_images(images))
    return values[0] if single else list(values)
