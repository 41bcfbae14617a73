"""SavedModel and TF-Hub classifiers: `hub.load` / `tf.saved_model.load`, then the
restored object's `__call__` (TF-Hub's reusable API) or its serving_default signature.

TF-Hub handles need the network (or a local copy of the module: a handle may be a path);
tests save a small module to a temporary folder and load it through the same code.
Loading a SavedModel runs its graph: load only SavedModels from sources you trust.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Tuple

import tensorflow as tf

from cdgan_tf.classifiers import base

HUB_VALUE_RANGE = "0_1"  # TF-Hub image classifiers take [0, 1] pixels.


def _hw_from_specs(specs) -> Optional[Tuple[int, int]]:
  for spec in tf.nest.flatten(specs):
    if isinstance(spec, tf.TensorSpec) and spec.shape.rank == 4:
      h, w = spec.shape[1], spec.shape[2]
      if h is not None and w is not None:
        return (int(h), int(w))
  return None


def _signature_fn(signature, what: str) -> Tuple[Callable, Optional[Tuple[int, int]]]:
  """Single-input call of a serving signature; returns (fn, static input size)."""
  _, kwargs = signature.structured_input_signature
  if len(kwargs) != 1:
    raise base.ClassifierError(f"{what}: serving_default takes {sorted(kwargs)}; "
                          "need exactly one image input")
  (key, spec), = kwargs.items()
  outputs = signature.structured_outputs
  if isinstance(outputs, dict):
    if len(outputs) == 1:
      out_key = next(iter(outputs))
    elif "logits" in outputs:
      out_key = "logits"
    else:
      raise base.ClassifierError(f"{what}: serving_default returns {sorted(outputs)}; "
                            "need one output or one named 'logits'")
  else:
    out_key = None

  def call(x):
    result = signature(**{key: tf.cast(x, spec.dtype)})
    return result[out_key] if out_key is not None else result

  return call, _hw_from_specs(spec)


def _saved_model_call(obj, what: str) -> Tuple[Callable, Optional[Tuple[int, int]]]:
  """The restored object's __call__ (TF-Hub reusable API), else serving_default."""
  if callable(obj):
    size = None
    for fn in getattr(obj.__call__, "concrete_functions", ()):
      size = size or _hw_from_specs(fn.structured_input_signature)
    return obj, size
  signatures = getattr(obj, "signatures", {})
  if "serving_default" in signatures:
    return _signature_fn(signatures["serving_default"], what)
  raise base.ClassifierError(f"{what}: the SavedModel has neither __call__ nor a "
                        f"serving_default signature (signatures: {sorted(signatures)})")


def _infer_num_outputs(fn, input_size, value_range, what: str) -> int:
  dtype = tf.uint8 if value_range == "uint8" else tf.float32
  out = fn(tf.zeros([1, *input_size, 3], dtype))
  if out.shape.rank != 2:
    raise base.ClassifierError(f"{what}: output shape {out.shape.as_list()} is not [N, classes]")
  return int(out.shape[-1])


def from_saved_model(obj, *, what: str, name: str, source: str, input_size,
                      value_range, num_outputs, **kwargs) -> base.Classifier:
  call, inferred_size = _saved_model_call(obj, what)
  input_size = base.resolve_size(input_size, inferred_size, what)
  value_range = value_range or HUB_VALUE_RANGE
  fn = tf.function(call, reduce_retracing=True)
  if num_outputs is None:
    num_outputs = _infer_num_outputs(fn, input_size, value_range, what)
  return base.Classifier(fn, name=name, input_size=input_size, value_range=value_range,
                         num_outputs=num_outputs, differentiable=True, source=source,
                         trackable=obj, **kwargs)


def hub_load(handle: str, what: str):
  import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top
  try:
    return hub.load(handle)
  except Exception as e:  # pylint: disable=broad-except
    hint = "" if os.path.exists(handle) else " (no network? pass a local path)"
    raise base.ClassifierError(f"could not load {what}: {type(e).__name__}: {e}{hint}") from e
