"""The shipped ImageNet purifiers: load, take photos of any size.

weights/imagenet/cdgan (the paper's geometry, 256 -> 64 -> 256),
weights/imagenet/cdgan_scale2 (256 -> 128 -> 256) and weights/imagenet/cdgan_scale1
(256 -> 256 -> 256, no bottleneck). A user puts one in front of an
ImageNet classifier: it must load from the committed generator files alone, take a
224x224 and a 500x375 image, and (wrapped by `base.keep_input_size`) hand back each
image's own size in [0, 1]; the chain itself works at the geometry recorded in
generator.json.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.defenses import base
from cdgan_tf.defenses import cdgan
from tests.conftest import REPO_ROOT

WEIGHTS = REPO_ROOT / "weights" / "imagenet" / "cdgan"
SHIPPED = {"cdgan": 4, "cdgan_scale2": 2, "cdgan_scale1": 1}  # folder -> scale at 256 px


def _load(folder: str) -> cdgan.CdganPurifier:
  weights = WEIGHTS.parent / folder
  return cdgan.CdganPurifier.from_files(str(weights / "sub"), str(weights / "super"))


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def shipped(request):
  return request.param, _load(request.param)


@pytest.fixture(scope="module")
def purifier():
  """The paper's geometry (weights/imagenet/cdgan)."""
  return _load("cdgan")


@pytest.mark.parametrize("folder", sorted(SHIPPED))
def test_generator_files_record_their_geometry(folder):
  for role in ("sub", "super"):
    info = json.loads((WEIGHTS.parent / folder / role / "generator.json").read_text())
    assert info["role"] == role
    assert info["image_size"] == 256 and info["scale"] == SHIPPED[folder]
  # The super generator was trained on the shipped sub generator's outputs.
  super_info = json.loads((WEIGHTS.parent / folder / "super" / "generator.json").read_text())
  assert super_info["sub_model"] == f"weights/imagenet/{folder}/sub"


def test_chain_works_at_256_through_the_bottleneck(shipped):
  folder, purifier = shipped  # pylint: disable=redefined-outer-name
  scale = SHIPPED[folder]
  assert (purifier.image_size, purifier.scale) == (256, scale)
  rng = np.random.default_rng(0)
  images = tf.constant(rng.random((1, 256, 256, 3)), tf.float32)
  resized, small, purified = purifier.run_stages(images)
  assert small.shape == (1, 256 // scale, 256 // scale, 3)
  assert purified.shape == (1, 256, 256, 3)
  # A trained purifier is not the identity, and not far from its input either.
  difference = float(tf.reduce_mean(tf.abs(purified - resized)))
  assert 0.0 < difference < 0.25


@pytest.mark.parametrize("height,width", [(224, 224), (375, 500)])
def test_any_photo_size_comes_back_in_its_size(shipped, height, width):
  purifier = shipped[1]  # pylint: disable=redefined-outer-name
  rng = np.random.default_rng(1)
  # A smooth photo-like image (random pixels are not what the GAN was trained on).
  coarse = rng.random((1, 8, 8, 3)).astype(np.float32)
  image = image_ops.resize(coarse, (height, width))
  purified = base.keep_input_size(purifier)(image)
  assert purified.shape == (1, height, width, 3)
  assert purified.dtype == tf.float32
  assert float(tf.reduce_min(purified)) >= 0.0 and float(tf.reduce_max(purified)) <= 1.0
  # Close to the bottleneck's own reading of the image: a smooth image survives 256->64.
  assert float(tf.reduce_mean(tf.abs(purified - image))) < 0.1


class _FakeHubClassifier(tf.Module):
  """A 1001-way TF-Hub-style ImageNet classifier at 224x224: pooled pixels, fixed map."""

  def __init__(self):
    super().__init__()
    rng = np.random.default_rng(0)
    self.w = tf.Variable(rng.normal(size=(48, 1001)).astype("float32"))

  @tf.function(input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)])
  def __call__(self, images):
    pooled = tf.image.resize(images, (4, 4), method="area")
    return tf.matmul(tf.reshape(pooled, (-1, 48)), self.w)


@pytest.mark.slow
def test_export_defended_with_the_shipped_weights_and_a_hub_module(purifier, tmp_path):
  from cdgan_tf import classifiers  # pylint: disable=import-outside-toplevel
  from cdgan_tf.serving import saving  # pylint: disable=import-outside-toplevel

  hub_dir = str(tmp_path / "hub_module")
  tf.saved_model.save(_FakeHubClassifier(), hub_dir)
  classifier = classifiers.load_classifier(hub_dir, name="fake_hub")
  export_dir = saving.export_defended(classifier, purifier, str(tmp_path / "defended"))
  served = tf.saved_model.load(export_dir).signatures["serving_default"]
  rng = np.random.default_rng(2)
  for height, width in [(224, 224), (375, 500)]:
    image = image_ops.resize(rng.random((1, 8, 8, 3)).astype(np.float32), (height, width))
    out = served(images=image)
    expected = classifier(purifier(image))  # The chain: purifier at 256, then the model.
    np.testing.assert_allclose(out["logits"].numpy(), expected.numpy(), atol=1e-4)
    assert out["logits"].shape == (1, 1000)  # Background logit dropped: ILSVRC 0..999.
