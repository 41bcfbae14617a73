"""The one TFRecord schema of paired (adversarial, clean) images.

Used by `tfrecords_builder` to write and by `cdgan_tf.data.pipeline` to read, so the two
cannot drift apart. Images are stored encoded (the adversarial side as lossless PNG);
resizing happens in the input pipeline, so one set of records serves both GANs and any
resolution.

Feature keys:
  adversarial/encoded, adversarial/height, adversarial/width,
  clean/encoded, clean/height, clean/width,
  label (int64, -1 when unknown), file_name (the stem or relative path that paired them),
  attack/name (string: the attack-mix member that made the adversarial side, e.g.
    "clean", "uniform", "pgd", "feature"; "" when unknown, as in records of one
    transfer set), attack/eps (float32 L-inf budget on the [0, 1] scale, e.g. 8/255;
    0 for "clean", -1 when unknown).
The attack keys are optional: records written without them read as "" / -1.
"""

from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf

from cdgan_tf import image_ops

SCHEMA_VERSION = 1
UNKNOWN_LABEL = -1
UNKNOWN_ATTACK = ""
UNKNOWN_EPS = -1.0

FEATURE_SPEC = {
    "adversarial/encoded": tf.io.FixedLenFeature([], tf.string),
    "adversarial/height": tf.io.FixedLenFeature([], tf.int64),
    "adversarial/width": tf.io.FixedLenFeature([], tf.int64),
    "clean/encoded": tf.io.FixedLenFeature([], tf.string),
    "clean/height": tf.io.FixedLenFeature([], tf.int64),
    "clean/width": tf.io.FixedLenFeature([], tf.int64),
    "label": tf.io.FixedLenFeature([], tf.int64, default_value=UNKNOWN_LABEL),
    "file_name": tf.io.FixedLenFeature([], tf.string),
    "attack/name": tf.io.FixedLenFeature([], tf.string, default_value=UNKNOWN_ATTACK),
    "attack/eps": tf.io.FixedLenFeature([], tf.float32, default_value=UNKNOWN_EPS),
}


def _bytes(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _float(value: float) -> tf.train.Feature:
  return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))


def make_example(adversarial_encoded: bytes, adversarial_size, clean_encoded: bytes,
                 clean_size, label: int, file_name: str,
                 attack_name: Optional[str] = None,
                 attack_eps: Optional[float] = None) -> tf.train.Example:
  """Builds one record.

  Args:
    adversarial_encoded: PNG bytes of the adversarial image.
    adversarial_size: (height, width) of the adversarial image.
    clean_encoded: PNG or JPEG bytes of the clean image, prepared (cropped) already.
    clean_size: (height, width) of the clean image.
    label: Class index (0..999 for ImageNet), or UNKNOWN_LABEL.
    file_name: The stem or relative path that paired the two images.
    attack_name: The attack that made the adversarial side (`attack/name`); None
      leaves the key out (readers see UNKNOWN_ATTACK).
    attack_eps: Its L-inf budget in [0, 1] (`attack/eps`); None leaves it out.

  Returns:
    A `tf.train.Example` following FEATURE_SPEC.
  """
  feature = {
      "adversarial/encoded": _bytes(adversarial_encoded),
      "adversarial/height": _int(adversarial_size[0]),
      "adversarial/width": _int(adversarial_size[1]),
      "clean/encoded": _bytes(clean_encoded),
      "clean/height": _int(clean_size[0]),
      "clean/width": _int(clean_size[1]),
      "label": _int(label),
      "file_name": _bytes(file_name.encode("utf-8")),
  }
  if attack_name is not None:
    feature["attack/name"] = _bytes(attack_name.encode("utf-8"))
  if attack_eps is not None:
    feature["attack/eps"] = _float(attack_eps)
  return tf.train.Example(features=tf.train.Features(feature=feature))


def parse_example(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Parses one serialized record and decodes both images.

  Args:
    serialized: scalar tf.string, one record.

  Returns:
    dict with "adversarial" and "clean" (float32 [H, W, 3] in [0, 1], each at its
    stored size), "label" (int64 scalar), "file_name" (tf.string scalar),
    "attack/name" (tf.string scalar) and "attack/eps" (float32 scalar).
  """
  features = tf.io.parse_single_example(serialized, FEATURE_SPEC)
  return {
      "adversarial": image_ops.decode_image(features["adversarial/encoded"]),
      "clean": image_ops.decode_image(features["clean/encoded"]),
      "label": features["label"],
      "file_name": features["file_name"],
      "attack/name": features["attack/name"],
      "attack/eps": features["attack/eps"],
  }
