"""Classifier adapters: one interface over TF-Hub, SavedModel, Keras and TFLite models.

Every adapter takes float32 NHWC RGB images in [0, 1] of any size and returns float32
scores [N, num_classes] indexed by the ILSVRC2012 label 0..999 (sorted synsets) for
ImageNet models. Inside, it
  1. optionally crops the central `crop_fraction` of the image,
  2. resizes to the model's `input_size` with `image_ops.resize` (when the size differs),
  3. converts [0, 1] to the model's `value_range`,
  4. runs the model and, for 1001-way models, drops the background logit at index 0.
Models that end in a softmax return log-probabilities, so the output is always usable
as logits (argmax, softmax and cross-entropy give the same answers).

Sources (see `load_classifier`): a registry name of the paper's classifiers
(`mobilenet_v2`, `keras:mobilenet_v2`, ...), a TF-Hub handle or URL, a SavedModel
directory, a `.keras` / `.h5` file, or a `.tflite` file. TF-Hub, SavedModel and Keras
adapters are differentiable (usable in `tf.function` and under `tf.GradientTape`);
TFLite adapters are forward-only and raise a clear error if a gradient is requested.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf import tflite_runner

VALUE_RANGES = ("0_1", "-1_1", "0_255", "uint8")
# Central crop for whole, uncropped ImageNet photos (e.g. the 227x227 val sample): the
# standard evaluation crop, worth +1.3 to +4.1 top-1 points on the real TFLite models
# (experiments/imagenet_tflite_check.py). Images that are already centre-cropped, such
# as DAmageNet's 224x224 files and their paired clean images, keep crop_fraction=1.0.
IMAGENET_EVAL_CROP_FRACTION = 0.875
OUTPUT_KINDS = ("logits", "probabilities")
_LOG_EPSILON = 1e-12


class ClassifierError(ValueError):
  """A classifier spec, file or input that cannot be used; the message names it."""


@dataclasses.dataclass(frozen=True)
class RegistryEntry:
  """One of the paper's classifiers and its two public sources.

  Attributes:
    hub_handle: TF-Hub ImageNet classification handle (TF2 SavedModel; input in [0, 1],
      1001 logits with background at index 0).
    keras_application: Name of the `keras.applications` constructor (1000 logits when
      built with classifier_activation=None; input in [-1, 1]).
    input_size: (height, width) both sources expect.
  """
  hub_handle: str
  keras_application: str
  input_size: Tuple[int, int]


REGISTRY = {
    "resnet50_v2": RegistryEntry(
        "https://tfhub.dev/google/imagenet/resnet_v2_50/classification/5",
        "ResNet50V2", (224, 224)),
    "resnet152_v2": RegistryEntry(
        "https://tfhub.dev/google/imagenet/resnet_v2_152/classification/5",
        "ResNet152V2", (224, 224)),
    "inception_v3": RegistryEntry(
        "https://tfhub.dev/google/imagenet/inception_v3/classification/5",
        "InceptionV3", (299, 299)),
    "mobilenet_v2": RegistryEntry(
        "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5",
        "MobileNetV2", (224, 224)),
}
HUB_VALUE_RANGE = "0_1"
KERAS_APPLICATIONS_VALUE_RANGE = "-1_1"  # ResNet*V2, InceptionV3, MobileNetV2: mode "tf".


def _check_choice(what: str, value, choices) -> None:
  if value not in choices:
    raise ClassifierError(f"{what}={value!r} is not one of {', '.join(choices)}")


def to_value_range(images: tf.Tensor, value_range: str) -> tf.Tensor:
  """Maps float32 [0, 1] pixels to a model's expected input range.

  Args:
    images: float32 [..., 3] in [0, 1].
    value_range: "0_1", "-1_1", "0_255" (float32 outputs) or "uint8" (uint8 pixels
      round(255 * x); not differentiable).

  Returns:
    The converted tensor, same shape.
  """
  _check_choice("value_range", value_range, VALUE_RANGES)
  if value_range == "0_1":
    return images
  if value_range == "-1_1":
    return images * 2.0 - 1.0
  if value_range == "0_255":
    return images * 255.0
  return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)


class Classifier:
  """A classifier behind the project's one image convention.

  Attributes:
    name: Short name used in reports and errors.
    input_size: (height, width) the underlying model takes.
    value_range: What the underlying model expects ("0_1", "-1_1", "0_255", "uint8").
    num_outputs: Width of the underlying model's output (1001 with background, 1000,
      or the class count of another data set).
    label_offset: Leading outputs dropped (1 for background-at-0 models, else 0).
    num_classes: num_outputs - label_offset: width of what `__call__` returns.
    differentiable: Whether gradients flow from the output to the input images.
    outputs: "logits", or "probabilities" (a softmax output, returned as log-probs).
    crop_fraction: Central fraction of the image kept before resizing (1.0: no crop).
    resize_method: `tf.image.ResizeMethod` name used by `image_ops.resize`.
    source: Where the model came from (handle, path or registry name).
  """

  def __init__(self, model_fn: Callable[[tf.Tensor], tf.Tensor], *, name: str,
               input_size: Sequence[int], value_range: str, num_outputs: int,
               differentiable: bool, label_offset: Optional[int] = None,
               outputs: str = "logits", crop_fraction: float = 1.0,
               resize_method: str = image_ops.RESIZE_METHOD, source: str = ""):
    """Wraps `model_fn`, which maps a batch at `input_size` in `value_range`
    ([N, h, w, 3] float32, or uint8 for "uint8") to raw outputs [N, num_outputs].
    label_offset defaults to 1 when num_outputs == 1001, else 0.
    """
    _check_choice("value_range", value_range, VALUE_RANGES)
    _check_choice("outputs", outputs, OUTPUT_KINDS)
    if isinstance(input_size, int):
      input_size = (input_size, input_size)
    input_size = tuple(int(s) for s in input_size)
    if len(input_size) != 2 or min(input_size) < 1:
      raise ClassifierError(f"{name}: input_size={input_size} must be (height, width)")
    if num_outputs is None or int(num_outputs) < 1:
      raise ClassifierError(f"{name}: num_outputs={num_outputs} must be positive")
    if label_offset is None:
      label_offset = 1 if int(num_outputs) == 1001 else 0
    if not 0 <= label_offset < int(num_outputs):
      raise ClassifierError(f"{name}: label_offset={label_offset} out of range")
    if not 0.0 < crop_fraction <= 1.0:
      raise ClassifierError(f"{name}: crop_fraction={crop_fraction} must be in (0, 1]")
    self._model_fn = model_fn
    self.name = name
    self.input_size = input_size
    self.value_range = value_range
    self.num_outputs = int(num_outputs)
    self.label_offset = int(label_offset)
    self.differentiable = bool(differentiable)
    self.outputs = outputs
    self.crop_fraction = float(crop_fraction)
    self.resize_method = resize_method
    self.source = source

  @property
  def trackable(self):
    """The underlying TensorFlow object (Keras model or restored SavedModel), or None.

    Export puts it inside the defended SavedModel; TFLite adapters have none.
    """
    for attribute in ("model", "module"):
      value = getattr(self, attribute, None)
      if value is not None:
        return value
    return None

  @property
  def num_classes(self) -> int:
    return self.num_outputs - self.label_offset

  def __repr__(self) -> str:
    return (f"Classifier(name={self.name!r}, input_size={self.input_size}, "
            f"value_range={self.value_range!r}, num_outputs={self.num_outputs}, "
            f"label_offset={self.label_offset}, differentiable={self.differentiable}, "
            f"outputs={self.outputs!r}, crop_fraction={self.crop_fraction}, "
            f"resize_method={self.resize_method!r}, source={self.source!r})")

  def _check_images(self, images) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_floating:
      raise ClassifierError(
          f"{self.name}: expects float32 images in [0, 1], got dtype {images.dtype.name}"
          " (convert uint8 pixels with tf.image.convert_image_dtype)")
    shape = images.shape
    if shape.rank is not None and (shape.rank != 4 or shape[-1] not in (None, 3)):
      raise ClassifierError(
          f"{self.name}: expects images [N, H, W, 3], got shape {shape.as_list()}")
    return tf.cast(images, tf.float32)

  def preprocess(self, images: tf.Tensor) -> tf.Tensor:
    """Central crop (if crop_fraction < 1) and resize to input_size.

    Args:
      images: float32 [N, H, W, 3] in [0, 1], any H, W.

    Returns:
      float32 [N, input_size[0], input_size[1], 3] in [0, 1].
    """
    images = self._check_images(images)
    if self.crop_fraction < 1.0:
      images = tf.image.central_crop(images, self.crop_fraction)
    if tuple(images.shape[1:3]) != self.input_size:
      images = image_ops.resize(images, self.input_size, method=self.resize_method)
    return images

  def __call__(self, images: tf.Tensor) -> tf.Tensor:
    """Scores a batch.

    Args:
      images: float32 [N, H, W, 3] in [0, 1], any H, W.

    Returns:
      float32 [N, num_classes] logits (log-probabilities for softmax models); index i
      is label i (ILSVRC 0..999 for ImageNet models).
    """
    images = self._check_images(images)
    if self.differentiable:
      return self._scores(images)

    @tf.custom_gradient
    def forward_only(x):
      def grad(_):
        raise ClassifierError(f"{self.name}: this classifier is forward-only "
                              "(e.g. TFLite); gradients are not available")
      return self._scores(x), grad

    return forward_only(images)

  def _scores(self, images: tf.Tensor) -> tf.Tensor:
    inputs = to_value_range(self.preprocess(images), self.value_range)
    raw = tf.cast(self._model_fn(inputs), tf.float32)
    if raw.shape.rank is not None and (raw.shape.rank != 2 or raw.shape[-1] not in
                                       (None, self.num_outputs)):
      raise ClassifierError(f"{self.name}: model returned shape {raw.shape.as_list()}, "
                            f"expected [N, {self.num_outputs}]")
    if self.outputs == "probabilities":
      raw = tf.math.log(tf.maximum(raw, _LOG_EPSILON))
    return raw[:, self.label_offset:]

  def predict(self, images: tf.Tensor) -> tf.Tensor:
    """Predicted labels: int64 [N] (ILSVRC 0..999 for ImageNet models)."""
    return tf.argmax(self(images), axis=-1, output_type=tf.int64)


# ----------------------------------------------------------------------------------
# SavedModel / TF-Hub


def _resolve_size(override, inferred, what: str) -> Tuple[int, int]:
  """The override (int or pair) if given, else the model's; they must agree."""
  if isinstance(override, int):
    override = (override, override)
  override = tuple(override) if override is not None else None
  if override and inferred and override != tuple(inferred):
    raise ClassifierError(f"{what}: input_size={override} differs from the model's "
                          f"{tuple(inferred)}")
  if not (override or inferred):
    raise ClassifierError(f"{what}: the model does not fix its input size; "
                          "pass input_size=(height, width)")
  return override or tuple(inferred)


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
    raise ClassifierError(f"{what}: serving_default takes {sorted(kwargs)}; "
                          "need exactly one image input")
  (key, spec), = kwargs.items()
  outputs = signature.structured_outputs
  if isinstance(outputs, dict):
    if len(outputs) == 1:
      out_key = next(iter(outputs))
    elif "logits" in outputs:
      out_key = "logits"
    else:
      raise ClassifierError(f"{what}: serving_default returns {sorted(outputs)}; "
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
  raise ClassifierError(f"{what}: the SavedModel has neither __call__ nor a "
                        f"serving_default signature (signatures: {sorted(signatures)})")


def _infer_num_outputs(fn, input_size, value_range, what: str) -> int:
  dtype = tf.uint8 if value_range == "uint8" else tf.float32
  out = fn(tf.zeros([1, *input_size, 3], dtype))
  if out.shape.rank != 2:
    raise ClassifierError(f"{what}: output shape {out.shape.as_list()} is not [N, classes]")
  return int(out.shape[-1])


def _from_saved_model(obj, *, what: str, name: str, source: str, input_size,
                      value_range, num_outputs, **kwargs) -> Classifier:
  call, inferred_size = _saved_model_call(obj, what)
  input_size = _resolve_size(input_size, inferred_size, what)
  value_range = value_range or HUB_VALUE_RANGE
  fn = tf.function(call, reduce_retracing=True)
  if num_outputs is None:
    num_outputs = _infer_num_outputs(fn, input_size, value_range, what)
  classifier = Classifier(fn, name=name, input_size=input_size, value_range=value_range,
                          num_outputs=num_outputs, differentiable=True, source=source,
                          **kwargs)
  classifier.module = obj  # Keeps the restored variables alive.
  return classifier


def _hub_load(handle: str, what: str):
  import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top
  try:
    return hub.load(handle)
  except Exception as e:  # pylint: disable=broad-except
    hint = "" if os.path.exists(handle) else " (no network? pass a local path)"
    raise ClassifierError(f"could not load {what}: {type(e).__name__}: {e}{hint}") from e


# ----------------------------------------------------------------------------------
# Keras


def _keras_outputs_kind(model) -> str:
  import keras  # pylint: disable=g-import-not-at-top
  last = model.layers[-1] if model.layers else None
  if isinstance(last, keras.layers.Softmax):
    return "probabilities"
  activation = last.get_config().get("activation") if last is not None else None
  if activation == "softmax" or getattr(activation, "__name__", "") == "softmax":
    return "probabilities"
  return "logits"


def _from_keras_model(model, *, what: str, name: str, source: str, input_size,
                      value_range, num_outputs, outputs=None, **kwargs) -> Classifier:
  if isinstance(model.input_shape, list) or len(model.input_shape) != 4:
    raise ClassifierError(f"{what}: need one image input [N, H, W, 3], model takes "
                          f"{model.input_shape}")
  inferred = tuple(model.input_shape[1:3])
  input_size = _resolve_size(input_size, None if None in inferred else inferred, what)
  if num_outputs is None:
    num_outputs = model.output_shape[-1]
    if isinstance(model.output_shape, list) or num_outputs is None:
      raise ClassifierError(f"{what}: need one output [N, classes], model gives "
                            f"{model.output_shape}")
  fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
  classifier = Classifier(fn, name=name, input_size=input_size,
                          value_range=value_range or "0_1", num_outputs=num_outputs,
                          differentiable=True, outputs=outputs or _keras_outputs_kind(model),
                          source=source, **kwargs)
  classifier.model = model
  return classifier


def keras_application(registry_name: str, weights: Optional[str] = "imagenet",
                      **kwargs) -> Classifier:
  """The keras.applications alternative source of a registry classifier.

  Args:
    registry_name: A REGISTRY name (e.g. "mobilenet_v2").
    weights: "imagenet" (downloaded to ~/.keras/models on first use), None (random,
      for tests) or a weights file path.
    **kwargs: `load_classifier` keyword overrides (name, input_size, value_range,
      num_outputs, label_offset, outputs, crop_fraction, resize_method).

  Returns:
    A differentiable Classifier with 1000 logits, value_range "-1_1" by default.
  """
  import keras  # pylint: disable=g-import-not-at-top
  if registry_name not in REGISTRY:
    raise ClassifierError(f"keras:{registry_name} is not a registry name "
                          f"({', '.join(REGISTRY)})")
  entry = REGISTRY[registry_name]
  constructor = getattr(keras.applications, entry.keras_application)
  try:
    model = constructor(weights=weights, classifier_activation=None,
                        input_shape=(*entry.input_size, 3))
  except Exception as e:  # pylint: disable=broad-except
    raise ClassifierError(
        f"could not build keras.applications.{entry.keras_application} with weights="
        f"{weights!r}: {type(e).__name__}: {e} (no network? put the weights file in "
        "~/.keras/models or pass a local .keras file)") from e
  spec = f"keras:{registry_name}"
  kwargs["name"] = kwargs.get("name") or spec
  kwargs["value_range"] = kwargs.get("value_range") or KERAS_APPLICATIONS_VALUE_RANGE
  kwargs.setdefault("input_size", None)
  kwargs.setdefault("num_outputs", None)
  return _from_keras_model(model, what=spec, source=spec, **kwargs)


# ----------------------------------------------------------------------------------
# TFLite


def _from_tflite(path: str, *, name: str, input_size, value_range, num_outputs,
                 outputs=None, num_threads=None, **kwargs) -> Classifier:
  try:
    runner = tflite_runner.TFLiteRunner(path, num_threads)
  except ValueError as e:
    raise ClassifierError(str(e)) from e
  input_size = _resolve_size(input_size, runner.input_size, f"TFLite file {path}")
  is_uint8 = runner.input_dtype == np.uint8
  value_range = value_range or ("uint8" if is_uint8 else "0_1")
  if value_range == "uint8" and not is_uint8:
    raise ClassifierError(f"TFLite file {path}: value_range='uint8' needs a uint8-input "
                          f"model, this one takes {runner.input_dtype.name}")
  if num_outputs is not None and int(num_outputs) != runner.num_outputs:
    raise ClassifierError(f"TFLite file {path}: num_outputs={num_outputs} differs from "
                          f"the model's {runner.num_outputs}")
  if outputs is None:
    softmax = tflite_runner.output_is_softmax(runner.model_content,
                                              runner.output["index"])
    outputs = "probabilities" if softmax else "logits"

  def forward(x):
    y = tf.numpy_function(runner, [x], tf.float32, stateful=True)
    y.set_shape([x.shape[0], runner.num_outputs])
    return y

  classifier = Classifier(forward, name=name, input_size=input_size,
                          value_range=value_range, num_outputs=runner.num_outputs,
                          differentiable=False, outputs=outputs, source=path, **kwargs)
  classifier.interpreter = runner.interpreter
  return classifier


# ----------------------------------------------------------------------------------
# Entry point


def load_classifier(spec: str, input_size=None, value_range: Optional[str] = None,
                    num_outputs: Optional[int] = None, name: Optional[str] = None, *,
                    label_offset: Optional[int] = None, outputs: Optional[str] = None,
                    crop_fraction: float = 1.0, resize_method: Optional[str] = None,
                    num_threads: Optional[int] = None) -> Classifier:
  """Loads a classifier from a registry name, TF-Hub handle, directory or file.

  Args:
    spec: One of
      - a REGISTRY name ("mobilenet_v2", "resnet50_v2", "resnet152_v2",
        "inception_v3"): its TF-Hub handle (1001-way, [0, 1] input);
      - "keras:<registry name>": the keras.applications model (1000-way, [-1, 1]);
      - a URL or TF-Hub handle ("https://tfhub.dev/...", loaded with hub.load);
      - a SavedModel directory (TF2 SavedModel or TF-Hub module on disk; its __call__
        or its serving_default signature);
      - a ".keras" / ".h5" Keras model file;
      - a ".tflite" file (forward only; uint8 models take raw uint8 pixels and their
        quantized outputs are dequantized).
    input_size: (height, width) override; required when the model does not fix it.
    value_range: "0_1", "-1_1", "0_255" or "uint8" override. Defaults: [0, 1] for
      TF-Hub / SavedModel / Keras files, [-1, 1] for keras.applications, "uint8" for
      uint8-input TFLite models (else [0, 1]).
    num_outputs: Output width override (inferred from the model otherwise).
    name: Display name; defaults to the registry name or the file stem.
    label_offset: Leading outputs dropped; defaults to 1 for 1001-way models, else 0.
    outputs: "logits" or "probabilities"; detected for Keras and TFLite models (softmax
      last op), "logits" otherwise.
    crop_fraction: Central crop kept before resizing (1.0: none).
    resize_method: Resize method name; defaults to image_ops.RESIZE_METHOD (bicubic).
    num_threads: TFLite interpreter threads (None: the runtime's default).

  Returns:
    A Classifier.

  Raises:
    ClassifierError: spec is not a known name, URL, directory or supported file, or the
      model cannot be loaded or does not look like an image classifier.
  """
  if not isinstance(spec, str) or not spec:
    raise ClassifierError(f"classifier spec {spec!r} must be a non-empty string")
  common = dict(label_offset=label_offset, crop_fraction=crop_fraction,
                resize_method=resize_method or image_ops.RESIZE_METHOD)
  if spec.startswith("keras:"):
    return keras_application(spec[len("keras:"):], input_size=input_size,
                             value_range=value_range, num_outputs=num_outputs,
                             name=name or spec, outputs=outputs, **common)
  if spec in REGISTRY:
    entry = REGISTRY[spec]
    obj = _hub_load(entry.hub_handle, f"TF-Hub handle {entry.hub_handle} ({spec})")
    return _from_saved_model(obj, what=spec, name=name or spec, source=entry.hub_handle,
                             input_size=input_size or entry.input_size,
                             value_range=value_range or HUB_VALUE_RANGE,
                             num_outputs=num_outputs, outputs=outputs or "logits",
                             **common)
  if "://" in spec:
    obj = _hub_load(spec, f"TF-Hub handle {spec}")
    return _from_saved_model(obj, what=spec, name=name or spec.rstrip("/"), source=spec,
                             input_size=input_size, value_range=value_range,
                             num_outputs=num_outputs, outputs=outputs or "logits",
                             **common)
  path = os.path.expanduser(spec)
  stem = os.path.splitext(os.path.basename(path.rstrip("/")))[0]
  if os.path.isdir(path):
    if not any(os.path.exists(os.path.join(path, f))
               for f in ("saved_model.pb", "saved_model.pbtxt")):
      raise ClassifierError(f"classifier directory {path} is not a SavedModel "
                            "(no saved_model.pb)")
    obj = _hub_load(path, f"SavedModel directory {path}")
    return _from_saved_model(obj, what=path, name=name or stem, source=path,
                             input_size=input_size, value_range=value_range,
                             num_outputs=num_outputs, outputs=outputs or "logits",
                             **common)
  if not os.path.exists(path):
    raise ClassifierError(
        f"classifier spec {spec!r} is not a registry name ({', '.join(REGISTRY)}, or "
        "keras:<name>), a URL, or an existing directory or file")
  extension = os.path.splitext(path)[1].lower()
  if extension in (".keras", ".h5"):
    import keras  # pylint: disable=g-import-not-at-top
    try:
      model = keras.models.load_model(path, compile=False)
    except Exception as e:  # pylint: disable=broad-except
      raise ClassifierError(
          f"could not load Keras file {path}: {type(e).__name__}: {e}") from e
    return _from_keras_model(model, what=path, name=name or stem, source=path,
                             input_size=input_size, value_range=value_range,
                             num_outputs=num_outputs, outputs=outputs, **common)
  if extension == ".tflite":
    return _from_tflite(path, name=name or stem, input_size=input_size,
                        value_range=value_range, num_outputs=num_outputs,
                        outputs=outputs, num_threads=num_threads, **common)
  raise ClassifierError(f"classifier file {path}: unsupported type {extension!r} "
                        "(expected a SavedModel directory, .keras, .h5 or .tflite)")
