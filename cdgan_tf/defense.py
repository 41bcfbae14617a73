"""The chained CD-GAN purifier: any image -> resize -> sub G -> super G.

At inference the two independently trained generators are chained (paper, Fig. 1):

  image [N, H, W, 3] in [0, 1] (any H, W)
    -> resize to image_size (256)          bicubic, antialiased
    -> sub generator                       [N, 64, 64, 3]
    -> super generator                     [N, 256, 256, 3] in [0, 1]

and a classifier adapter then resizes the purified image into its own input size (the
resize before the classifier is part of the defended model, as in the paper). The
ablations `sub_only` (sub G, then bicubic up) and `super_only` (bicubic down, then
super G) replace one half of the chain by plain resizing.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import keras
import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.models import generators  # noqa: F401  (registers the custom layers)

MODES = ("chain", "sub_only", "super_only")


def load_generator(path: str) -> keras.Model:
  """Loads a generator exported by the trainer (<model_dir>/export/generator.keras).

  Args:
    path: The .keras file, or a training model_dir / export dir containing it.

  Returns:
    The Keras model: float32 [N, h, w, 3] in [0, 1] -> float32 [N, h', w', 3] in [0, 1].
  """
  for candidate in (path, os.path.join(path, "generator.keras"),
                    os.path.join(path, "export", "generator.keras")):
    if os.path.isfile(candidate):
      try:
        return keras.models.load_model(candidate, compile=False)
      except Exception as e:  # pylint: disable=broad-except
        raise ValueError(f"could not load generator {candidate}: {e}") from e
  raise FileNotFoundError(f"no generator at {path} (expected a .keras file or a model_dir "
                          "with export/generator.keras)")


def _generator_info(path: str) -> dict:
  folder = path if os.path.isdir(path) else os.path.dirname(path)
  for candidate in (os.path.join(folder, "generator.json"),
                    os.path.join(folder, "export", "generator.json")):
    if os.path.isfile(candidate):
      with open(candidate) as f:
        return json.load(f)
  return {}


def _scale_of(model: keras.Model, size: int) -> float:
  """Output/input size ratio of a fully convolutional generator, from a dummy call."""
  out = model(tf.zeros((1, size, size, 3)), training=False)
  return out.shape[1] / size


class Purifier(tf.Module):
  """CD-GAN's purifier (or one of its ablations) as one callable.

  Args:
    sub_generator: Keras model, [N, S, S, 3] -> [N, S/scale, S/scale, 3], in [0, 1].
    super_generator: Keras model, [N, s, s, 3] -> [N, s*scale, s*scale, 3], in [0, 1].
    image_size: S, the side the input is resized to first (paper: 256).
    scale: The resolution ratio (paper: 4).
    mode: "chain" (the paper's), "sub_only" or "super_only".
  """

  def __init__(self, sub_generator: Optional[keras.Model],
               super_generator: Optional[keras.Model], image_size: int = 256,
               scale: int = 4, mode: str = "chain", name: str = None):
    super().__init__(name=name or f"cdgan_{mode}")
    if mode not in MODES:
      raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    if image_size % scale:
      raise ValueError(f"image_size {image_size} is not divisible by scale {scale}")
    if mode in ("chain", "sub_only") and sub_generator is None:
      raise ValueError(f"mode {mode} needs the sub generator")
    if mode in ("chain", "super_only") and super_generator is None:
      raise ValueError(f"mode {mode} needs the super generator")
    self.sub_generator = sub_generator
    self.super_generator = super_generator
    self.image_size = int(image_size)
    self.scale = int(scale)
    self.mode = mode
    self.differentiable = True

  @classmethod
  def from_files(cls, sub_path: str = "", super_path: str = "", mode: str = "chain",
                 image_size: Optional[int] = None) -> "Purifier":
    """Loads the trainer's exported generators and reads their sizes.

    Args:
      sub_path: The sub generator's .keras file or training model_dir.
      super_path: The super generator's .keras file or training model_dir.
      mode: "chain", "sub_only" or "super_only".
      image_size: Overrides the size recorded next to the generators.
    """
    sub = load_generator(sub_path) if sub_path else None
    sup = load_generator(super_path) if super_path else None
    info = _generator_info(sub_path) if sub_path else {}
    if not info and super_path:
      info = _generator_info(super_path)
    size = image_size or info.get("image_size") or 256
    scale = info.get("scale")
    if scale is None:  # No metadata: measure it from the generators themselves.
      scale = (round(1 / _scale_of(sub, size)) if sub is not None
               else round(_scale_of(sup, size // 4)))
    if sub is not None and sup is not None:
      super_scale = round(_scale_of(sup, size // scale))
      if super_scale != scale:
        raise ValueError(f"generators do not match: sub scales by 1/{scale}, super by "
                         f"{super_scale} ({sub_path}, {super_path})")
    return cls(sub, sup, image_size=size, scale=scale, mode=mode)

  @property
  def small_size(self) -> int:
    return self.image_size // self.scale

  def stages(self, images: tf.Tensor):
    """Runs the purifier and returns every stage.

    Args:
      images: float32 [N, H, W, 3] in [0, 1], any H and W.

    Returns:
      (resized [N,S,S,3], intermediate [N,S/scale,S/scale,3], purified [N,S,S,3]),
      all in [0, 1].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank != 4 or images.shape[-1] != 3:
      raise ValueError(f"the purifier takes [N, H, W, 3] images, got shape {images.shape}")
    resized = image_ops.resize(images, self.image_size)
    if self.mode == "super_only":
      small = image_ops.resize(resized, self.small_size)
    else:
      small = tf.cast(self.sub_generator(resized, training=False), tf.float32)
    if self.mode == "sub_only":
      purified = image_ops.resize(small, self.image_size)
    else:
      purified = tf.cast(self.super_generator(small, training=False), tf.float32)
    return resized, small, tf.clip_by_value(purified, 0.0, 1.0)

  def __call__(self, images: tf.Tensor) -> tf.Tensor:
    """Purifies images: float32 [N, H, W, 3] in [0, 1] -> [N, S, S, 3] in [0, 1]."""
    return self.stages(images)[2]


class DefendedClassifier:
  """A purifier in front of a classifier: images -> logits [N, 1000].

  Differentiable end to end when both parts are (the white-box `pgd_defended`
  attack takes gradients through it).
  """

  def __init__(self, purifier, classifier):
    self.purifier = purifier
    self.classifier = classifier
    self.name = f"{getattr(purifier, 'name', 'purifier')}+{classifier.name}"
    self.differentiable = bool(getattr(purifier, "differentiable", False)
                               and getattr(classifier, "differentiable", False))

  def __call__(self, images: tf.Tensor) -> tf.Tensor:
    return self.classifier(self.purifier(images))
