"""The shipped CIFAR-10 CD-GAN (weights/cifar10/cdgan) keeps its measured clean quality.

On the 500 built-in sample images (no ../shared needed) the shipped chain in front of
the shipped classifiers must stay clearly above bicubic resizing through the same
bottleneck, the cheap baseline it is meant to beat. Measured with the weights shipped
2026-11-30 (`make demo`): CD-GAN on clean 60.0 / 54.8 / 62.2 % (ResNet-20-v2 /
MobileNet-v2 / Inception), resize on clean 51.8 / 57.8 / 54.2 %.
"""

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import classifiers
from cdgan_tf import image_ops
from cdgan_tf.data import folders
from cdgan_tf.data import image_files
from cdgan_tf.defenses import cdgan
from tests.conftest import REPO_ROOT

WEIGHTS = REPO_ROOT / "weights" / "cifar10"
SAMPLE = REPO_ROOT / "experiments" / "cifar10" / "sample" / "test"


@pytest.fixture(scope="module")
def sample():
  images, _ = folders.list_labelled_images(SAMPLE)
  pixels = np.stack([image_files.load_rgb(path) for _, path, _ in images])
  labels = np.array([label for _, _, label in images])
  return tf.constant(pixels.astype(np.float32) / 255.0), labels


def _top1(classifier, images, labels):
  logits = tf.concat([classifier(images[i:i + 100]) for i in range(0, len(labels), 100)], 0)
  return float(np.mean(np.argmax(logits.numpy(), axis=1) == labels))


@pytest.mark.parametrize("name,floor,margin", [("resnet_v2", 0.56, 0.04),
                                               ("inception", 0.58, 0.04)])
def test_shipped_chain_beats_bicubic_on_clean_sample_images(sample, name, floor, margin):
  images, labels = sample
  assert len(labels) == 500
  purifier = cdgan.CdganPurifier.from_files(str(WEIGHTS / "cdgan" / "sub"),
                                            str(WEIGHTS / "cdgan" / "super"))
  classifier = classifiers.load_classifier(str(WEIGHTS / f"{name}.keras"))
  purified = tf.concat([purifier(images[i:i + 100]) for i in range(0, 500, 100)], 0)
  bicubic = image_ops.resize(image_ops.resize(images, 16), 32)
  chain, resize = _top1(classifier, purified, labels), _top1(classifier, bicubic, labels)
  assert chain >= floor, (chain, resize)
  assert chain >= resize + margin, (chain, resize)
