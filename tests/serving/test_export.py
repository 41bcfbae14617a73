"""Export -> reload (fresh process) -> equal outputs, signatures, saved_model_cli, bad input."""

import json
import os
import subprocess
import sys
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cdgan_tf import classifiers
from cdgan_tf import image_ops
from cdgan_tf.defenses import cdgan
from cdgan_tf.models import generators
from cdgan_tf.serving import modules
from cdgan_tf.serving import saving

SIZE = 16
NUM_CLASSES = 1001  # A TF-Hub-style model with the background logit at index 0.


class _HubStyleClassifier(tf.Module):
  """A fake 1001-way TF-Hub classifier: a fixed random linear map of pooled pixels."""

  def __init__(self):
    super().__init__()
    rng = np.random.default_rng(0)
    self.w = tf.Variable(rng.normal(size=(3 * 4 * 4, NUM_CLASSES)).astype("float32"))

  @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
  def __call__(self, images):
    pooled = tf.image.resize(images, (4, 4), method="area")
    return tf.matmul(tf.reshape(pooled, (-1, 48)), self.w)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
  root = tmp_path_factory.mktemp("export")
  hub_dir = str(root / "hub_module")
  tf.saved_model.save(_HubStyleClassifier(), hub_dir)
  classifier = classifiers.load_classifier(hub_dir, name="hubby")
  keras.utils.set_random_seed(0)
  purifier = cdgan.CdganPurifier(
      generators.build_sub_generator(scale=2, num_res_blocks=1, filters=8),
      generators.build_super_generator(scale=2, num_res_blocks=1, filters=8),
      image_size=SIZE, scale=2)
  defended_dir = saving.export_defended(classifier, purifier, str(root / "defended"))
  purifier_dir = saving.export_purifier(purifier, str(root / "purifier"))
  rng = np.random.default_rng(1)
  images = rng.random((3, 20, 24, 3)).astype("float32")
  return dict(root=root, classifier=classifier, purifier=purifier, images=images,
              defended_dir=defended_dir, purifier_dir=purifier_dir)


def _png_bytes(images):
  encoded = []
  for image in images:
    pixels = (np.asarray(image) * 255).round().astype(np.uint8)
    encoded.append(tf.io.encode_png(pixels).numpy())
  return encoded


def _fresh_process(script: str, *args) -> str:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-c", script, *args], check=True, env=env,
                        capture_output=True, text=True, timeout=300).stdout


def test_reloaded_in_fresh_process_matches_in_process(parts, tmp_path):
  images = parts["images"]
  inputs = tmp_path / "inputs.npz"
  encoded = _png_bytes(images)
  np.savez(inputs, images=images, encoded=np.array(encoded, dtype=object))
  out = tmp_path / "out.npz"
  _fresh_process(
      "import sys, numpy as np, tensorflow as tf\n"
      "m = tf.saved_model.load(sys.argv[1])\n"
      "d = np.load(sys.argv[2], allow_pickle=True)\n"
      "a = m.signatures['serving_default'](images=tf.constant(d['images']))\n"
      "b = m.signatures['serving_bytes'](image_bytes=tf.constant(list(d['encoded'])))\n"
      "np.savez(sys.argv[3], **{'a_' + k: v.numpy() for k, v in a.items()},"
      " **{'b_' + k: v.numpy() for k, v in b.items()})\n",
      parts["defended_dir"], str(inputs), str(out))
  got = np.load(out)
  module = modules.DefendedModule(parts["classifier"], parts["purifier"])
  expected = module.serve_images(tf.constant(images))
  np.testing.assert_allclose(got["a_logits"], expected["logits"], atol=1e-5)
  np.testing.assert_allclose(got["a_probabilities"], expected["probabilities"], atol=1e-5)
  np.testing.assert_array_equal(got["a_classes"], expected["classes"])
  assert got["a_logits"].shape == (3, NUM_CLASSES - 1)  # background dropped: 0..999
  expected_bytes = module.serve_bytes(tf.constant(encoded))
  np.testing.assert_allclose(got["b_logits"], expected_bytes["logits"], atol=1e-5)
  # The chain itself: purifier, then the classifier (which drops the background logit).
  direct = parts["classifier"](parts["purifier"](images))
  np.testing.assert_allclose(got["a_logits"], direct, atol=1e-5)


def test_purifier_export_round_trip(parts):
  loaded = saving.ExportedPurifier(parts["purifier_dir"])
  assert (loaded.image_size, loaded.scale, loaded.name) == (SIZE, 2, "cdgan")
  np.testing.assert_allclose(loaded(parts["images"]), parts["purifier"](parts["images"]),
                             atol=1e-5)
  reloaded = tf.saved_model.load(parts["purifier_dir"])
  out = reloaded.signatures["serving_bytes"](
      image_bytes=tf.constant(_png_bytes(parts["images"][:2])))["purified"]
  assert out.shape == (2, SIZE, SIZE, 3)


def _cli(*args):
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  return subprocess.run([cli, *args], check=True, capture_output=True, text=True,
                        timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")).stdout


@pytest.mark.slow
def test_saved_model_cli_show_and_run(parts, tmp_path):
  shown = _cli("show", "--dir", parts["defended_dir"], "--all")
  assert "signature_def['serving_default']" in shown
  assert "signature_def['serving_bytes']" in shown
  for name in ("logits", "probabilities", "classes", "images", "image_bytes"):
    assert name in shown
  shared = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets",
                        "imagenet_val_sample", "ILSVRC2012_val_00000347.JPEG")
  if os.path.exists(shared):  # A real photo when ../shared is there.
    with Image.open(shared) as image:
      pixels = np.asarray(image.convert("RGB"), np.float32)[None] / 255.0
  else:
    pixels = parts["images"][:1]
  np.save(tmp_path / "image.npy", pixels)
  out_dir = tmp_path / "cli_out"
  _cli("run", "--dir", parts["defended_dir"], "--tag_set", "serve", "--signature_def",
       "serving_default", "--inputs", f"images={tmp_path / 'image.npy'}",
       "--outdir", str(out_dir))
  cli_class = np.load(out_dir / "classes.npy")
  module = modules.DefendedModule(parts["classifier"], parts["purifier"])
  in_process = module.serve_images(tf.constant(pixels))["classes"].numpy()
  np.testing.assert_array_equal(cli_class, in_process)


def test_bad_input_is_a_clear_error(parts):
  loaded = tf.saved_model.load(parts["defended_dir"])
  serve = loaded.signatures["serving_default"]
  with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError),
                     match="not compatible with expected shape"):
    serve(images=tf.zeros((SIZE, SIZE, 3)))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="not compatible with expected shape"):
    serve(images=tf.zeros((1, SIZE, SIZE, 4)))
  with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError),
                     match="float"):
    serve(images=tf.zeros((1, SIZE, SIZE, 3), tf.uint8))
  with pytest.raises(tf.errors.InvalidArgumentError, match="0..255"):
    serve(images=tf.fill((1, SIZE, SIZE, 3), 255.0))
  with pytest.raises(tf.errors.InvalidArgumentError):
    loaded.signatures["serving_bytes"](image_bytes=tf.constant([b"not an image"]))


def test_tflite_and_existing_dirs_are_refused(parts, tmp_path):
  class ForwardOnly:
    name = "model.tflite"
    trackable = None

  with pytest.raises(ValueError, match="TFLite"):
    modules.DefendedModule(ForwardOnly(), parts["purifier"])
  with pytest.raises(FileExistsError, match="overwrite"):
    saving.export_purifier(parts["purifier"], parts["purifier_dir"])
  again = saving.export_purifier(parts["purifier"], parts["purifier_dir"], overwrite=True)
  assert os.path.isfile(os.path.join(again, "saved_model.pb"))
  assert not [p for p in os.listdir(parts["root"]) if ".tmp-" in p]
  with pytest.raises(FileNotFoundError, match="no SavedModel"):
    saving.load(str(tmp_path))


def test_serving_edge_cases(parts):
  """Empty batches, NaN pixels, a scalar string and one bad element among good ones."""
  defended = tf.saved_model.load(parts["defended_dir"])
  purifier = tf.saved_model.load(parts["purifier_dir"])
  for loaded, key, width in ((defended, "logits", 1000), (purifier, "purified", None)):
    empty = loaded.signatures["serving_default"](images=tf.zeros((0, 12, 12, 3)))[key]
    assert empty.shape[0] == 0 and (width is None or empty.shape[1] == width)
    empty = loaded.signatures["serving_bytes"](image_bytes=tf.constant([], tf.string))[key]
    assert empty.shape[0] == 0
  assert defended.signatures["serving_default"](
      images=tf.zeros((0, 12, 12, 3)))["classes"].shape == (0,)
  nan = np.array(parts["images"][:2])
  nan[1, 3, 4, 0] = np.nan
  with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or infinite"):
    defended.signatures["serving_default"](images=tf.constant(nan))
  with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError),
                     match="image_bytes"):
    defended.signatures["serving_bytes"](image_bytes=tf.constant(b"abc"))
  good = _png_bytes(parts["images"][:3])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"image_bytes\[2\] is not a JPEG, PNG, GIF or BMP"):
    defended.signatures["serving_bytes"](
        image_bytes=tf.constant(good[:2] + [b"not an image"] + good[2:]))
  # The model still answers after the bad calls.
  out = defended.signatures["serving_bytes"](image_bytes=tf.constant(good))["classes"]
  assert out.shape == (3,)


def _by_hand(parts, images):
  """The chain computed from the trained Keras generators, outside any module:
  bicubic to the working size, sub G, super G, clip; then the classifier."""
  sub, sup = parts["purifier"].trained_generators
  resized = image_ops.resize(images, SIZE)
  purified = tf.clip_by_value(sup(sub(resized, training=False), training=False), 0.0, 1.0)
  return purified.numpy(), parts["classifier"](purified).numpy()


def test_every_signature_is_the_hand_computed_chain(parts):
  """Each signature of each exported module runs the whole model: a signature that
  skipped the purifier (or one generator) while another kept it would fail here."""
  images = parts["images"]
  quantised = np.round(images * 255.0) / 255.0  # What the PNGs of serving_bytes hold.
  encoded = tf.constant(_png_bytes(images))
  purified, logits = _by_hand(parts, images)
  purified_q, logits_q = _by_hand(parts, quantised)
  bare = parts["classifier"](images).numpy()
  sub, _ = parts["purifier"].trained_generators
  sub_only = parts["classifier"](image_ops.resize(sub(image_ops.resize(images, SIZE)),
                                                  SIZE)).numpy()
  assert np.abs(logits - bare).max() > 1e-2  # The purifier changes the answer ...
  assert np.abs(logits - sub_only).max() > 1e-2  # ... and so does its super generator.
  defended = tf.saved_model.load(parts["defended_dir"]).signatures
  purifier = tf.saved_model.load(parts["purifier_dir"]).signatures
  assert set(defended) == set(purifier) == {"serving_default", "serving_bytes"}
  out = defended["serving_default"](images=tf.constant(images))
  np.testing.assert_allclose(out["logits"], logits, atol=1e-4)
  np.testing.assert_allclose(out["probabilities"], tf.nn.softmax(logits), atol=1e-5)
  np.testing.assert_array_equal(out["classes"], np.argmax(logits, axis=-1))
  out = defended["serving_bytes"](image_bytes=encoded)
  np.testing.assert_allclose(out["logits"], logits_q, atol=1e-3)
  np.testing.assert_allclose(purifier["serving_default"](images=tf.constant(images))[
      "purified"], purified, atol=1e-5)
  np.testing.assert_allclose(purifier["serving_bytes"](image_bytes=encoded)["purified"],
                             purified_q, atol=1e-4)


def test_oversize_image_is_refused_by_the_server_before_decoding(parts, tmp_path):
  """A 6000x6000 PNG (~0.1 MB) would decode to 432 MB of float32; it is refused from its
  header, naming its index, with no memory spent on it (fresh process, as a server)."""
  big = tmp_path / "big.png"
  big.write_bytes(tf.io.encode_png(np.zeros((6000, 6000, 3), np.uint8)).numpy())
  small = tmp_path / "small.png"
  small.write_bytes(_png_bytes(parts["images"][:1])[0])
  script = (
      "import resource, sys, tensorflow as tf\n"
      "m = tf.saved_model.load(sys.argv[1])\n"
      "small, big = open(sys.argv[2], 'rb').read(), open(sys.argv[3], 'rb').read()\n"
      "f = m.signatures['serving_bytes']\n"
      "print('classes', f(image_bytes=tf.constant([small]))['classes'].numpy().tolist())\n"
      "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
      "try:\n"
      "  f(image_bytes=tf.constant([small, big]))\n"
      "  print('accepted')\n"
      "except tf.errors.InvalidArgumentError as e:\n"
      "  print('refused', ' '.join(e.message.split()))\n"
      "growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
      "print('growth_kb', growth, 'limit', int(m.max_pixels.numpy()))\n")
  out = _fresh_process(script, parts["defended_dir"], str(small), str(big)).splitlines()
  assert out[0].startswith("classes [")
  assert out[1].startswith("refused ") and (
      "image_bytes[1] is 6000x6000 = 36000000 decoded pixels, over the limit of 8388608 of "
      "this model (max_pixels)") in out[1], out
  growth, limit = int(out[2].split()[1]), int(out[2].split()[3])
  assert limit == 8388608
  assert growth < 100_000, out  # KB: far below the 108 MB (uint8) the decode would take.


class _BatchMean(cdgan.CdganPurifier):
  """Every output image is the mean of its call's batch: shows how requests are cut."""

  def __call__(self, images):
    return tf.broadcast_to(tf.reduce_mean(images, axis=0, keepdims=True), tf.shape(images))


def test_serving_purifies_in_cpu_batches_without_an_accelerator(parts, tmp_path):
  from cdgan_tf.defenses import base  # pylint: disable=g-import-not-at-top
  assert not tf.config.list_logical_devices("GPU")
  assert modules.PurifierModule(parts["purifier"]).batch_size == base.CPU_BATCH_SIZE == 8
  assert modules.PurifierModule(parts["purifier"], batch_size=0).batch_size == 0
  gpu = [tf.config.LogicalDevice("/device:GPU:0", "GPU")]
  with mock.patch.object(tf.config, "list_logical_devices", return_value=gpu):
    assert modules.PurifierModule(parts["purifier"]).batch_size == 0
  # 19 images in calls of 8, 8 and 3: each output is the mean of its own call's chunk.
  images = np.random.default_rng(2).random((19, SIZE, SIZE, 3)).astype("float32")
  means = _BatchMean(*parts["purifier"].trained_generators, image_size=SIZE, scale=2)
  module = modules.PurifierModule(means)  # Held: its tf.function methods need it alive.
  served = module.serve_images(images)["purified"].numpy()
  for start, stop in ((0, 8), (8, 16), (16, 19)):
    np.testing.assert_allclose(served[start:stop],
                               np.broadcast_to(images[start:stop].mean(0),
                                               (stop - start, SIZE, SIZE, 3)), atol=1e-6)
  # The real chain, exported with CPU batches and reloaded, serves what one call gives.
  path = saving.export_purifier(parts["purifier"], str(tmp_path / "batched"))
  reloaded = saving.load(path).signatures["serving_default"](images=images)["purified"]
  np.testing.assert_allclose(reloaded.numpy(), parts["purifier"](images).numpy(),
                             atol=1e-5)
