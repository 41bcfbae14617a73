"""The named classifiers and the one entry point that loads any classifier spec.

`load_classifier(spec)` accepts a registry name of the paper's classifiers
(`mobilenet_v2`, `resnet50_v2`, `resnet152_v2`, `inception_v3` -> their TF-Hub handles;
`keras:<name>` -> the keras.applications model), a TF-Hub handle or URL, a SavedModel
directory, a `.keras` / `.h5` file, or a `.tflite` file, and returns a
`base.Classifier` with the project's image convention.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple

import keras

from cdgan_tf import image_ops
from cdgan_tf.classifiers import base
from cdgan_tf.classifiers import keras_models
from cdgan_tf.classifiers import saved_model
from cdgan_tf.classifiers import tflite


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
KERAS_APPLICATIONS_VALUE_RANGE = "-1_1"  # ResNet*V2, InceptionV3, MobileNetV2: mode "tf".


def keras_application(registry_name: str, weights: Optional[str] = "imagenet",
                      **kwargs) -> base.Classifier:
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
  if registry_name not in REGISTRY:
    raise base.ClassifierError(f"keras:{registry_name} is not a registry name "
                          f"({', '.join(REGISTRY)})")
  entry = REGISTRY[registry_name]
  constructor = getattr(keras.applications, entry.keras_application)
  try:
    model = constructor(weights=weights, classifier_activation=None,
                        input_shape=(*entry.input_size, 3))
  except Exception as e:  # pylint: disable=broad-except
    raise base.ClassifierError(
        f"could not build keras.applications.{entry.keras_application} with weights="
        f"{weights!r}: {type(e).__name__}: {e} (no network? put the weights file in "
        "~/.keras/models or pass a local .keras file)") from e
  spec = f"keras:{registry_name}"
  kwargs["name"] = kwargs.get("name") or spec
  kwargs["value_range"] = kwargs.get("value_range") or KERAS_APPLICATIONS_VALUE_RANGE
  kwargs.setdefault("input_size", None)
  kwargs.setdefault("num_outputs", None)
  return keras_models.from_keras_model(model, what=spec, source=spec, **kwargs)


def load_classifier(spec: str, input_size=None, value_range: Optional[str] = None,
                    num_outputs: Optional[int] = None, name: Optional[str] = None, *,
                    label_offset: Optional[int] = None, outputs: Optional[str] = None,
                    crop_fraction: float = 1.0, resize_method: Optional[str] = None,
                    num_threads: Optional[int] = None,
                    gradients: bool = True) -> base.Classifier:
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
      - a ".tflite" file (the interpreter's outputs, dequantized; uint8 models take
        raw uint8 pixels; gradients from a float rebuild of the graph);
      - "float:<file>.tflite": that file's float rebuild as the classifier (float
        scores, exact gradients; `tflite.FloatRebuildClassifier`).
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
    gradients: TFLite only: build the float rebuild that gives the adapter gradients
      (False: forward-only, which loads faster).

  Returns:
    A Classifier.

  Raises:
    base.ClassifierError: spec is not a known name, URL, directory or supported file, or the
      model cannot be loaded or does not look like an image classifier.
  """
  if not isinstance(spec, str) or not spec:
    raise base.ClassifierError(f"classifier spec {spec!r} must be a non-empty string")
  common = dict(label_offset=label_offset, crop_fraction=crop_fraction,
                resize_method=resize_method or image_ops.RESIZE_METHOD)
  float_scores = spec.startswith("float:")  # A .tflite file's float rebuild.
  if float_scores:
    spec = spec[len("float:"):]
    if not spec.lower().endswith(".tflite") or not os.path.isfile(os.path.expanduser(spec)):
      raise base.ClassifierError(f"classifier spec 'float:{spec}': float: takes an "
                                 "existing .tflite file")
  if spec.startswith("keras:"):
    return keras_application(spec[len("keras:"):], input_size=input_size,
                             value_range=value_range, num_outputs=num_outputs,
                             name=name or spec, outputs=outputs, **common)
  if spec in REGISTRY:
    entry = REGISTRY[spec]
    obj = saved_model.hub_load(entry.hub_handle, f"TF-Hub handle {entry.hub_handle} ({spec})")
    return saved_model.from_saved_model(
        obj, what=spec, name=name or spec, source=entry.hub_handle,
        input_size=input_size or entry.input_size,
        value_range=value_range or saved_model.HUB_VALUE_RANGE, num_outputs=num_outputs,
        outputs=outputs or "logits", **common)
  if "://" in spec:
    obj = saved_model.hub_load(spec, f"TF-Hub handle {spec}")
    return saved_model.from_saved_model(
        obj, what=spec, name=name or spec.rstrip("/"), source=spec, input_size=input_size,
        value_range=value_range, num_outputs=num_outputs, outputs=outputs or "logits",
        **common)
  path = os.path.expanduser(spec)
  stem = os.path.splitext(os.path.basename(path.rstrip("/")))[0]
  if os.path.isdir(path):
    if not any(os.path.exists(os.path.join(path, f))
               for f in ("saved_model.pb", "saved_model.pbtxt")):
      raise base.ClassifierError(f"classifier directory {path} is not a SavedModel "
                            "(no saved_model.pb)")
    obj = saved_model.hub_load(path, f"SavedModel directory {path}")
    return saved_model.from_saved_model(
        obj, what=path, name=name or stem, source=path, input_size=input_size,
        value_range=value_range, num_outputs=num_outputs, outputs=outputs or "logits",
        **common)
  if not os.path.exists(path):
    raise base.ClassifierError(
        f"classifier spec {spec!r} is not a registry name ({', '.join(REGISTRY)}, or "
        "keras:<name>), a URL, or an existing directory or file")
  extension = os.path.splitext(path)[1].lower()
  if extension in (".keras", ".h5"):
    return keras_models.load_keras_file(path, name=name or stem, input_size=input_size,
                                        value_range=value_range, num_outputs=num_outputs,
                                        outputs=outputs, **common)
  if extension == ".tflite":
    return tflite.load_tflite(path, name=name or stem, input_size=input_size,
                              value_range=value_range, num_outputs=num_outputs,
                              outputs=outputs, num_threads=num_threads,
                              gradients=gradients, float_scores=float_scores, **common)
  raise base.ClassifierError(f"classifier file {path}: unsupported type {extension!r} "
                        "(expected a SavedModel directory, .keras, .h5 or .tflite)")
