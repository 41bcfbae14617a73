"""The classifier interface: one image convention over every model source.

Every adapter takes float32 NHWC RGB images in [0, 1] of any size and returns float32
scores [N, num_classes] indexed by the ILSVRC2012 label 0..999 (sorted synsets) for
ImageNet models. Inside, it
  1. optionally crops the central `crop_fraction` of the image,
  2. resizes to the model's `input_size` with `image_ops.resize` (when the size differs),
  3. converts [0, 1] to the model's `value_range`,
  4. runs the model and, for 1001-way models, drops the background logit at index 0.
Models that end in a softmax return log-probabilities, so the output is always usable
as logits (argmax, softmax and cross-entropy give the same answers).

The loaders per source (`saved_model`, `keras_models`, `tflite`) build `Classifier`s;
`registry.load_classifier` picks the loader for a spec.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.common import checks
from cdgan_tf.common import errors

VALUE_RANGES = ("0_1", "-1_1", "0_255", "uint8")
# Central crop for whole, uncropped ImageNet photos (e.g. the 227x227 val sample): the
# standard evaluation crop, worth +1.3 to +4.1 top-1 points on the real TFLite models
# (experiments/imagenet/preprocessing_check.py). Images that are already centre-cropped, such
# as DAmageNet's 224x224 files and their paired clean images, keep crop_fraction=1.0.
IMAGENET_EVAL_CROP_FRACTION = 0.875
OUTPUT_KINDS = ("logits", "probabilities")
_LOG_EPSILON = 1e-12


class ClassifierError(errors.UsageError):
  """A classifier spec, file or input that cannot be used; the message names it."""


def _check_choice(what: str, value, choices) -> None:
  checks.check_choice(what, value, choices, error=ClassifierError)


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
    gradient_source: Where those gradients come from: "model" (the model's own),
      "none" (forward-only), or a description of a stand-in (TFLite: "float rebuild of
      the TFLite graph"); reports say so when it is not the model's own.
    outputs: "logits", or "probabilities" (a softmax output, returned as log-probs).
    crop_fraction: Central fraction of the image kept before resizing (1.0: no crop).
    resize_method: `tf.image.ResizeMethod` name used by `image_ops.resize`.
    source: Where the model came from (handle, path or registry name).
  """

  def __init__(self, model_fn: Callable[[tf.Tensor], tf.Tensor], *, name: str,
               input_size: Sequence[int], value_range: str, num_outputs: int,
               differentiable: bool, label_offset: Optional[int] = None,
               outputs: str = "logits", crop_fraction: float = 1.0,
               resize_method: str = image_ops.RESIZE_METHOD, source: str = "",
               trackable=None):
    """Wraps `model_fn`, which maps a batch at `input_size` in `value_range`
    ([N, h, w, 3] float32, or uint8 for "uint8") to raw outputs [N, num_outputs].
    label_offset defaults to 1 when num_outputs == 1001, else 0. `trackable` is the
    underlying TensorFlow object (Keras model or restored SavedModel) that export puts
    inside a defended SavedModel; None for models that cannot go there (TFLite).
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
    self.gradient_source = "model" if differentiable else "none"
    self.outputs = outputs
    self.crop_fraction = float(crop_fraction)
    self.resize_method = resize_method
    self.source = source
    self.trackable = trackable

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


def resolve_size(override, inferred, what: str) -> Tuple[int, int]:
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
