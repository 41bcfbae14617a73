"""CD-GAN in the Adversarial Robustness Toolbox (ART): a preprocessor and a black-box model.

Needs the `art` extra: `pip install 'cdgan_tf[art]'` (adversarial-robustness-toolbox).

  from art.estimators.classification import TensorFlowV2Classifier
  from art.attacks.evasion import ProjectedGradientDescent
  from cdgan_tf.integrations.art import CdganPreprocessor

  art_model = TensorFlowV2Classifier(
      keras_model, nb_classes=1000, input_shape=(224, 224, 3), clip_values=(0, 1),
      loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      preprocessing_defences=[CdganPreprocessor("imagenet-128")])
  x_adv = ProjectedGradientDescent(art_model, eps=4 / 255, eps_step=1 / 255,
                                   max_iter=10).generate(x)

Rules the preprocessor keeps:
  * value range: inputs float32 in [0, 1] (ART's `clip_values=(0, 1)`); outputs too.
    Put a classifier's normalisation into ART's `preprocessing=(mean, std)`, which ART
    applies after the preprocessing defences, or into the model itself.
  * shapes: channels-last [N, H, W, 3] (`channels_first=False`, ART's default for
    TensorFlowV2Classifier); any H and W. The purified image (the purifier's working
    size, 256 or 32) is resized back to each input's own (H, W), or to `output_size`.
  * gradients: exact, through both generators (`bpda=False`, default), or BPDA
    (`bpda=True`): forward purified, backward the identity (the bicubic resize's
    gradient where the size changes; `cdgan_tf.attacks.bpda`).
  * it runs when ART predicts and attacks (`apply_predict=True`), not in ART's `fit`
    (`apply_fit=False`).

`black_box_classifier` wraps purifier + classifier as ART's
`BlackBoxClassifierNeuralNetwork` (numpy in, probabilities out) for ART's decision- and
score-based attacks (HopSkipJump, Square, ...).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.attacks import bpda as bpda_lib
from cdgan_tf.defenses import base

try:
  from art.defences.preprocessor.preprocessor import PreprocessorTensorFlowV2
  from art.estimators.classification import BlackBoxClassifierNeuralNetwork
except ImportError as e:  # pragma: no cover - exercised only without the extra
  raise ImportError("cdgan_tf.integrations.art needs the Adversarial Robustness Toolbox: "
                    "pip install 'cdgan_tf[art]' (adversarial-robustness-toolbox)") from e

Size = Optional[Union[int, Sequence[int]]]


def _purifier(purifier) -> base.Purifier:
  if isinstance(purifier, base.Purifier):
    return purifier
  from cdgan_tf import pretrained  # pylint: disable=import-outside-toplevel
  return pretrained.load_purifier(purifier)


def _pair(size: Size) -> Optional[Tuple[int, int]]:
  if size is None:
    return None
  return (int(size), int(size)) if np.ndim(size) == 0 else tuple(int(s) for s in size)


def purify_to(purifier: base.Purifier, images: tf.Tensor, output_size: Size = None):
  """`purifier(images)` resized to `output_size`, or to the input's own (H, W).

  Args:
    images: float32 [N, H, W, 3] in [0, 1].

  Returns:
    float32 [N, h, w, 3] in [0, 1].
  """
  size = _pair(output_size) or tf.shape(images)[1:3]
  return image_ops.resize(purifier(images), size)


class CdganPreprocessor(PreprocessorTensorFlowV2):
  """A purifier as ART's `PreprocessorTensorFlowV2` (see the module docstring).

  Args:
    purifier: A `Purifier`, or what `cdgan_tf.load_purifier` takes ("imagenet-128").
    bpda: Identity backward pass instead of the exact gradient.
    output_size: Side (int) or (height, width) of the output; default: the input's.
    apply_fit: Also purify in ART's `fit` (default False).
    apply_predict: Purify in ART's predictions and attacks (default True).
  """

  def __init__(self, purifier, bpda: bool = False, output_size: Size = None,
               apply_fit: bool = False, apply_predict: bool = True):
    super().__init__(is_fitted=True, apply_fit=apply_fit, apply_predict=apply_predict)
    self.purifier = _purifier(purifier)
    self.bpda = bool(bpda)
    self.output_size = _pair(output_size)
    purify = lambda x: purify_to(self.purifier, x, self.output_size)  # noqa: E731
    self._forward = bpda_lib.bpda(purify) if self.bpda else purify

  def forward(self, x: tf.Tensor, y=None):
    """x float32 [N, H, W, 3] in [0, 1] -> (purified [N, h, w, 3] in [0, 1], y)."""
    return self._forward(tf.cast(x, tf.float32)), y

  def fit(self, x, y=None, **kwargs) -> None:
    """Nothing to fit: the generators are trained already."""

  def _check_params(self) -> None:
    pass


def predict_fn(purifier, classifier: Callable, output_size: Size = None,
               batch_size: int = 32, logits: bool = True) -> Callable[[np.ndarray], np.ndarray]:
  """A numpy function images -> class probabilities of `classifier` behind `purifier`.

  Args:
    purifier: A `Purifier` or what `cdgan_tf.load_purifier` takes.
    classifier: images float32 [N, h, w, 3] in [0, 1] -> [N, num_classes] (a Keras
      model or a `cdgan_tf.classifiers` adapter).
    output_size: The classifier's input side or (height, width); default: the
      Keras model's input size when known, else the input image's.
    batch_size: Images per call.
    logits: The classifier returns logits (softmax is applied), else probabilities.

  Returns:
    f(x): x float [N, H, W, 3] in [0, 1] (numpy) -> float32 [N, num_classes], rows sum to 1.
  """
  purifier = _purifier(purifier)
  if output_size is None:
    shape = getattr(classifier, "input_shape", None)
    if shape is not None and len(shape) == 4 and None not in tuple(shape[1:3]):
      output_size = tuple(shape[1:3])

  def predict(x: np.ndarray) -> np.ndarray:
    outputs = []
    for start in range(0, len(x), batch_size):
      images = tf.convert_to_tensor(np.asarray(x[start:start + batch_size], np.float32))
      scores = tf.cast(classifier(purify_to(purifier, images, output_size)), tf.float32)
      outputs.append((tf.nn.softmax(scores, axis=-1) if logits else scores).numpy())
    return np.concatenate(outputs, axis=0) if outputs else np.zeros((0, 0), np.float32)

  return predict


def black_box_classifier(purifier, classifier: Callable, input_shape: Sequence[int],
                         nb_classes: int, output_size: Size = None, batch_size: int = 32,
                         logits: bool = True) -> BlackBoxClassifierNeuralNetwork:
  """Purifier + classifier as ART's `BlackBoxClassifierNeuralNetwork`.

  Args:
    purifier, classifier, output_size, batch_size, logits: As for `predict_fn`.
    input_shape: (H, W, 3), the attacked images' shape (channels-last, kept as is).
    nb_classes: The classifier's number of classes.

  Returns:
    An ART estimator: numpy float32 [N, H, W, 3] in [0, 1] -> probabilities
    [N, nb_classes], clip_values (0, 1), channels_first False.
  """
  return BlackBoxClassifierNeuralNetwork(
      predict_fn(purifier, classifier, output_size, batch_size, logits),
      input_shape=tuple(int(s) for s in input_shape), nb_classes=int(nb_classes),
      channels_first=False, clip_values=(0.0, 1.0))
