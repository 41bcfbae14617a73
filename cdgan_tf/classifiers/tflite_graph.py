"""The main subgraph of a `.tflite` flatbuffer, read without the interpreter.

The parsing half of `tflite_rebuild`: `read_graph(path)` returns the tensors (their
`TensorInfo`, with constant data), and the operators in execution order, read with
TensorFlow's generated flatbuffer schema (the interpreter's XNNPACK delegate would hide
the ops). Nothing here imports from `cdgan_tf`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, List, Union

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema

from .tflite_quant import TensorInfo, TFLiteRebuildError

_OP_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
_DTYPES = {
    schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16,
    schema.TensorType.FLOAT64: np.float64, schema.TensorType.INT8: np.int8,
    schema.TensorType.UINT8: np.uint8, schema.TensorType.INT16: np.int16,
    schema.TensorType.UINT16: np.uint16, schema.TensorType.INT32: np.int32,
    schema.TensorType.UINT32: np.uint32, schema.TensorType.INT64: np.int64,
    schema.TensorType.BOOL: np.bool_,
}
@dataclasses.dataclass(eq=False)
class Operator:
  """One operator of the flatbuffer (execution order), inputs -1 when absent."""
  index: int
  name: str
  inputs: List[int]
  outputs: List[int]
  options: Any


@dataclasses.dataclass(eq=False)
class Graph:
  """The main subgraph of a TFLite file."""
  path: str
  tensors: List[TensorInfo]
  operators: List[Operator]
  inputs: List[int]
  outputs: List[int]


def _op_name(code) -> str:
  builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
  if builtin == schema.BuiltinOperator.CUSTOM:
    custom = code.customCode.decode("utf-8", "replace") if code.customCode else "?"
    return f"CUSTOM({custom})"
  return _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")


def _tensor_info(index: int, tensor, buffers, content: bytes, path: str) -> TensorInfo:
  name = tensor.name.decode("utf-8", "replace") if tensor.name else f"tensor_{index}"
  shape = tuple(int(s) for s in (tensor.shape if tensor.shape is not None else ()))
  dtype = _DTYPES.get(tensor.type)
  buffer = buffers[tensor.buffer] if 0 < tensor.buffer < len(buffers) else None
  data = None
  if buffer is not None and buffer.data is not None and len(buffer.data):
    data = np.asarray(buffer.data, np.uint8).tobytes()
  elif buffer is not None and buffer.offset > 1:  # Large models keep data after the flatbuffer.
    data = content[buffer.offset:buffer.offset + buffer.size]
  raw = None
  if data is not None:
    if dtype is None or tensor.sparsity is not None:
      raise TFLiteRebuildError(f"TFLite file {path}: constant tensor {index} ({name!r}) "
                               f"has an unsupported type {tensor.type} or is sparse")
    raw = np.frombuffer(data, dtype).reshape(shape)
  quantization = tensor.quantization
  scale = zero_point = None
  axis = 0
  if quantization is not None and quantization.scale is not None and len(quantization.scale):
    scale = np.asarray(quantization.scale, np.float32).reshape(-1)
    zero_point = np.asarray(quantization.zeroPoint if quantization.zeroPoint is not None
                            else [0], np.int64).reshape(-1)
    axis = int(quantization.quantizedDimension)
  return TensorInfo(index, name, shape, np.dtype(dtype if dtype is not None else object),
                    scale, zero_point, axis, raw)


def read_graph(path: Union[str, os.PathLike]) -> Graph:
  """Parses the main subgraph of a `.tflite` file (tensors, constants, operators).

  Raises:
    TFLiteRebuildError: the file cannot be read or parsed.
  """
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      content = f.read()
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    subgraph = model.subgraphs[0]
  except Exception as e:  # pylint: disable=broad-except
    raise TFLiteRebuildError(f"cannot read TFLite file {path}: {type(e).__name__}: {e}") from e
  tensors = [_tensor_info(i, t, model.buffers, content, path)
             for i, t in enumerate(subgraph.tensors or [])]
  operators = [Operator(i, _op_name(model.operatorCodes[op.opcodeIndex]),
                        [int(k) for k in (op.inputs if op.inputs is not None else [])],
                        [int(k) for k in (op.outputs if op.outputs is not None else [])],
                        op.builtinOptions)
               for i, op in enumerate(subgraph.operators or [])]
  return Graph(path, tensors, operators, [int(i) for i in subgraph.inputs],
               [int(i) for i in subgraph.outputs])
