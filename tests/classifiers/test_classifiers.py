"""Tests of the classifier adapters.

Fake classifiers with a known answer are saved to temp dirs and loaded through the same
code paths as the real ones (hub.load, SavedModel signatures, keras.models.load_model,
the TFLite interpreter). A fake scores an image by its mean brightness m (after the
adapter's value-range conversion): output j is 2*k*S*m - k^2 with k = j - offset, so its
argmax is output round(S * m) + offset, i.e. label round(S * m) once the adapter drops
`offset` background outputs. The real-data tests run the real MobileNet-v2 TFLite model
on real ImageNet images from ../shared.
"""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import classifiers
from cdgan_tf import image_ops
from cdgan_tf.classifiers import base
from cdgan_tf.classifiers import registry
from cdgan_tf.classifiers import ClassifierError

SIZE = 8


def quadratic_params(num_outputs, scale, offset=0, value_range="0_1"):
  """Dense kernel [3, n] and bias [n] on channel means; see the module docstring.

  value_range is what the fake model takes: for "-1_1" it maps its input back to
  [0, 1] internally, so a correct adapter conversion gives the same label.
  """
  a, b = {"0_1": (1.0, 0.0), "-1_1": (0.5, 0.5)}[value_range]
  k = np.arange(num_outputs, dtype=np.float64) - offset
  kernel = np.tile((2.0 * k * scale * a / 3.0)[None, :], [3, 1])
  bias = 2.0 * k * scale * b - k ** 2
  return kernel.astype(np.float32), bias.astype(np.float32)


def constant_images(values, size=SIZE):
  return tf.constant(np.stack([np.full((size, size, 3), v, np.float32) for v in values]))


def save_fake_hub(path, num_outputs=1001, scale=100.0, offset=1, size=SIZE):
  """A TF-Hub-style reusable SavedModel: a tf.Module with a tf.function __call__."""
  kernel, bias = quadratic_params(num_outputs, scale, offset)
  module = tf.Module()
  module.kernel = tf.Variable(kernel)
  module.bias = tf.Variable(bias)

  @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
  def call(images):
    return tf.reduce_mean(images, axis=[1, 2]) @ module.kernel + module.bias

  module.__call__ = call
  tf.saved_model.save(module, str(path))
  return str(path)


def save_fake_signature_model(path, num_outputs=1000, scale=100.0):
  """A SavedModel with only a serving_default signature returning a dict."""
  kernel, bias = quadratic_params(num_outputs, scale)
  module = tf.Module()
  module.kernel = tf.Variable(kernel)
  module.bias = tf.Variable(bias)

  @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
  def serve(images):
    logits = tf.reduce_mean(images, axis=[1, 2]) @ module.kernel + module.bias
    return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

  tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
  return str(path)


def fake_keras_model(num_outputs, scale, offset=0, value_range="0_1", activation=None):
  inputs = keras.Input((SIZE, SIZE, 3))
  x = keras.layers.GlobalAveragePooling2D()(inputs)
  outputs = keras.layers.Dense(num_outputs, activation=activation)(x)
  model = keras.Model(inputs, outputs)
  model.layers[-1].set_weights(list(quadratic_params(num_outputs, scale, offset,
                                                     value_range)))
  return model


def convert_to_tflite(path, num_outputs, scale, offset=0, quantize=False):
  kernel, bias = quadratic_params(num_outputs, scale, offset)
  module = tf.Module()
  module.kernel = tf.Variable(kernel)
  module.bias = tf.Variable(bias)

  @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)])
  def call(images):
    return tf.reduce_mean(images, axis=[1, 2]) @ module.kernel + module.bias

  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [call.get_concrete_function()], module)
  if quantize:
    rng = np.random.default_rng(0)

    def representative():
      for v in np.linspace(0.0, 1.0, 11):
        noise = rng.uniform(-0.02, 0.02, (1, SIZE, SIZE, 3))
        yield [np.clip(v + noise, 0.0, 1.0).astype(np.float32)]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
  with open(path, "wb") as f:
    f.write(converter.convert())
  return str(path)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
  """All fakes, saved once per module."""
  d = tmp_path_factory.mktemp("classifiers")
  paths = {
      "hub": save_fake_hub(d / "hub_1001"),
      "hub_dynamic": save_fake_hub(d / "hub_dynamic", size=None),
      "signature": save_fake_signature_model(d / "signature_1000"),
      "tflite_1001": convert_to_tflite(d / "fake_1001.tflite", 1001, 100.0, offset=1),
      "tflite_float5": convert_to_tflite(d / "fake_float5.tflite", 5, 4.0),
      "tflite_uint8": convert_to_tflite(d / "fake_uint8.tflite", 5, 4.0, quantize=True),
  }
  keras_1001 = fake_keras_model(1001, 100.0, offset=1)
  paths["keras_1001"] = str(d / "fake_1001.keras")
  keras_1001.save(paths["keras_1001"])
  keras_m11 = fake_keras_model(1000, 100.0, value_range="-1_1", activation="softmax")
  paths["keras_m11_softmax"] = str(d / "fake_m11_softmax.h5")
  keras_m11.save(paths["keras_m11_softmax"])
  return paths


VALUES = (0.123, 0.372, 0.808)  # Off-centre, so the loss gradient is not zero.
LABELS = [12, 37, 81]


def test_to_value_range():
  x = tf.constant([0.0, 0.5, 1.0])
  np.testing.assert_allclose(base.to_value_range(x, "0_1"), [0.0, 0.5, 1.0])
  np.testing.assert_allclose(base.to_value_range(x, "-1_1"), [-1.0, 0.0, 1.0])
  np.testing.assert_allclose(base.to_value_range(x, "0_255"), [0.0, 127.5, 255.0])
  as_uint8 = base.to_value_range(tf.constant([0.0, 0.499, 1.0]), "uint8")
  assert as_uint8.dtype == tf.uint8
  np.testing.assert_array_equal(as_uint8, [0, 127, 255])
  with pytest.raises(ClassifierError, match="value_range"):
    base.to_value_range(x, "0_2")


def test_hub_module_1001_label_shift_and_resize(models_dir):
  clf = classifiers.load_classifier(models_dir["hub"])
  assert clf.input_size == (SIZE, SIZE)  # Read from the module's signature.
  assert (clf.num_outputs, clf.label_offset, clf.num_classes) == (1001, 1, 1000)
  assert clf.value_range == "0_1" and clf.differentiable and clf.outputs == "logits"
  images = constant_images(VALUES, size=24)  # Any size: resized to 8x8 inside.
  logits = clf(images)
  assert logits.shape == (3, 1000) and logits.dtype == tf.float32
  np.testing.assert_array_equal(clf.predict(images), LABELS)
  # The raw module's argmax is exactly one more: the background output is dropped.
  raw = clf.trackable(image_ops.resize(images, SIZE))
  np.testing.assert_array_equal(tf.argmax(raw, -1), np.array(LABELS) + 1)
  np.testing.assert_allclose(logits, raw[:, 1:], rtol=1e-5, atol=1e-3)


def test_hub_module_dynamic_size_needs_input_size(models_dir):
  with pytest.raises(ClassifierError, match="pass input_size"):
    classifiers.load_classifier(models_dir["hub_dynamic"])
  clf = classifiers.load_classifier(models_dir["hub_dynamic"], input_size=16)
  assert clf.input_size == (16, 16)
  assert clf.preprocess(constant_images(VALUES)).shape == (3, 16, 16, 3)
  np.testing.assert_array_equal(clf.predict(constant_images(VALUES)), LABELS)


def test_signature_savedmodel_1000_way(models_dir):
  clf = classifiers.load_classifier(models_dir["signature"], name="sig")
  assert clf.name == "sig" and clf.input_size == (SIZE, SIZE)
  assert (clf.num_outputs, clf.label_offset) == (1000, 0)
  np.testing.assert_array_equal(clf.predict(constant_images(VALUES)), LABELS)
  # Of the signature's two outputs the adapter takes "logits", not "probabilities".
  assert float(tf.reduce_max(clf(constant_images(VALUES)))) > 100.0


def test_keras_file_1001_and_softmax_minus_one_range(models_dir):
  clf = classifiers.load_classifier(models_dir["keras_1001"])
  assert (clf.name, clf.input_size, clf.num_outputs, clf.label_offset) == (
      "fake_1001", (SIZE, SIZE), 1001, 1)
  assert clf.outputs == "logits"
  np.testing.assert_array_equal(clf.predict(constant_images(VALUES)), LABELS)
  raw = clf.trackable(constant_images(VALUES))
  np.testing.assert_array_equal(tf.argmax(raw, -1), np.array(LABELS) + 1)

  # A model that takes [-1, 1] and ends in softmax.
  right = classifiers.load_classifier(models_dir["keras_m11_softmax"], value_range="-1_1")
  assert right.outputs == "probabilities" and right.num_outputs == 1000
  log_probs = right(constant_images(VALUES))
  np.testing.assert_allclose(tf.reduce_sum(tf.exp(log_probs), -1), 1.0, atol=1e-4)
  np.testing.assert_array_equal(right.predict(constant_images(VALUES)), LABELS)
  # The default [0, 1] feeds the wrong range and gets the wrong answer.
  wrong = classifiers.load_classifier(models_dir["keras_m11_softmax"])
  assert not np.any(wrong.predict(constant_images(VALUES)).numpy() == LABELS)


@pytest.mark.parametrize("kind", ["hub", "signature", "keras_1001"])
def test_gradients_flow_in_tf_function(models_dir, kind):
  clf = classifiers.load_classifier(models_dir[kind])
  images = constant_images(VALUES, size=16)
  labels = tf.constant(LABELS)

  @tf.function
  def loss_gradient(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, clf(x)))
    return tape.gradient(loss, x)

  grad = loss_gradient(images)
  assert grad.shape == images.shape
  assert np.all(np.isfinite(grad)) and float(tf.reduce_max(tf.abs(grad))) > 0.0
  # Moving along -grad lowers the loss (the gradient is the real one, not noise).
  loss = lambda x: float(tf.reduce_sum(  # pylint: disable=g-long-lambda
      tf.nn.sparse_softmax_cross_entropy_with_logits(labels, clf(x))))
  step = 1e-4 * grad / tf.reduce_max(tf.abs(grad))
  assert loss(images - step) < loss(images)


def test_tflite_float_1001_with_rebuild_gradients(models_dir):
  clf = classifiers.load_classifier(models_dir["tflite_1001"])
  assert clf.differentiable and clf.gradient_source == "float rebuild of the TFLite graph"
  assert (clf.input_size, clf.num_outputs, clf.label_offset) == ((SIZE, SIZE), 1001, 1)
  assert clf.value_range == "0_1" and clf.outputs == "logits"
  images = constant_images(VALUES, size=20)
  # Batch of 3 through a batch-1 model, eagerly and inside tf.function.
  np.testing.assert_array_equal(clf.predict(images), LABELS)
  np.testing.assert_array_equal(tf.function(clf.predict)(images), LABELS)
  reference = classifiers.load_classifier(models_dir["keras_1001"])
  np.testing.assert_allclose(clf(images), reference(images), rtol=1e-4, atol=0.05)
  # The values are the interpreter's; the gradient is the rebuild's, which is the
  # Keras model's gradient (the .tflite file is that model, converted).
  labels = tf.constant(LABELS)
  gradients = []
  for model in (clf, reference):
    x = tf.Variable(images)
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, model(x)))
    gradients.append(tape.gradient(loss, x))
  assert float(tf.reduce_max(tf.abs(gradients[1]))) > 0
  np.testing.assert_allclose(gradients[0], gradients[1], rtol=1e-3, atol=1e-6)
  forward_only = classifiers.load_classifier(models_dir["tflite_1001"], gradients=False)
  assert not forward_only.differentiable and forward_only.gradient_source == "none"
  x = tf.Variable(images)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(forward_only(x))
  with pytest.raises(ClassifierError, match="forward-only"):
    tape.gradient(loss, x)


def test_tflite_uint8_quantized_in_and_out(models_dir):
  quantized = classifiers.load_classifier(models_dir["tflite_uint8"])
  floating = classifiers.load_classifier(models_dir["tflite_float5"])
  assert quantized.interpreter.get_input_details()[0]["dtype"] == np.uint8
  assert quantized.interpreter.get_output_details()[0]["dtype"] == np.uint8
  assert quantized.value_range == "uint8" and floating.value_range == "0_1"
  assert quantized.num_outputs == 5 and quantized.label_offset == 0
  images = constant_images((0.0, 0.26, 0.5, 0.74, 1.0, 0.1))
  expected = [0, 1, 2, 3, 4, 0]
  np.testing.assert_array_equal(floating.predict(images), expected)
  np.testing.assert_array_equal(quantized.predict(images), expected)
  # Dequantized outputs are close to the float model's (logits span about [-16, 32]).
  np.testing.assert_allclose(quantized(images), floating(images), atol=1.0)
  # Feeding the quantized model through its float range must agree as well.
  via_range = classifiers.load_classifier(models_dir["tflite_uint8"], value_range="0_1")
  np.testing.assert_array_equal(via_range.predict(images), expected)


def test_crop_fraction_uses_the_centre(models_dir):
  image = np.full((1, 16, 16, 3), 0.9, np.float32)
  image[:, 4:12, 4:12, :] = 0.3
  full = classifiers.load_classifier(models_dir["hub"])
  cropped = classifiers.load_classifier(models_dir["hub"], crop_fraction=0.5,
                                        resize_method="bilinear")
  assert cropped.crop_fraction == 0.5 and cropped.resize_method == "bilinear"
  assert int(cropped.predict(image)[0]) == 30
  assert int(full.predict(image)[0]) == 75  # Mean 0.75 over the whole image.


def test_bad_images_are_clear_errors(models_dir):
  clf = classifiers.load_classifier(models_dir["hub"], name="fakehub")
  with pytest.raises(ClassifierError, match=r"fakehub.*\[N, H, W, 3\].*\[8, 8, 3\]"):
    clf(tf.zeros([8, 8, 3]))
  with pytest.raises(ClassifierError, match=r"fakehub.*\[2, 8, 8, 1\]"):
    clf(tf.zeros([2, 8, 8, 1]))
  with pytest.raises(ClassifierError, match="fakehub.*uint8"):
    clf(tf.zeros([2, 8, 8, 3], tf.uint8))


def test_bad_specs_are_clear_errors(models_dir, tmp_path):
  missing = str(tmp_path / "nowhere.keras")
  with pytest.raises(ClassifierError, match="nowhere.keras.*registry name"):
    classifiers.load_classifier(missing)
  with pytest.raises(ClassifierError, match="not a SavedModel"):
    classifiers.load_classifier(str(tmp_path))
  text = tmp_path / "model.txt"
  text.write_text("hello")
  with pytest.raises(ClassifierError, match="model.txt.*unsupported type '.txt'"):
    classifiers.load_classifier(str(text))
  bad_tflite = tmp_path / "broken.tflite"
  bad_tflite.write_bytes(b"\x00" * 64)
  with pytest.raises(ClassifierError, match="could not load TFLite file .*broken.tflite"):
    classifiers.load_classifier(str(bad_tflite))
  bad_keras = tmp_path / "broken.keras"
  bad_keras.write_bytes(b"not a zip")
  with pytest.raises(ClassifierError, match="could not load Keras file .*broken.keras"):
    classifiers.load_classifier(str(bad_keras))
  with pytest.raises(ClassifierError, match="keras:resnet9 is not a registry name"):
    classifiers.load_classifier("keras:resnet9")
  with pytest.raises(ClassifierError, match="num_outputs=1000 differs"):
    classifiers.load_classifier(models_dir["tflite_1001"], num_outputs=1000)
  with pytest.raises(ClassifierError, match="crop_fraction"):
    classifiers.load_classifier(models_dir["hub"], crop_fraction=0.0)
  with pytest.raises(ClassifierError, match=r"input_size=\(16, 16\) differs.*\(8, 8\)"):
    classifiers.load_classifier(models_dir["keras_1001"], input_size=16)
  with pytest.raises(ClassifierError, match="'uint8' needs a uint8-input model"):
    classifiers.load_classifier(models_dir["tflite_float5"], value_range="uint8")
  with pytest.raises(ClassifierError, match="value_range='0_2'"):
    classifiers.load_classifier(models_dir["hub"], value_range="0_2")


def test_hub_download_failure_names_the_handle(monkeypatch):
  import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top

  def offline(handle):
    raise OSError(f"<urlopen error [Errno -2] Name or service not known> for {handle}")

  monkeypatch.setattr(hub, "load", offline)
  handle = classifiers.REGISTRY["inception_v3"].hub_handle
  with pytest.raises(ClassifierError,
                     match=r"TF-Hub handle .*inception_v3/classification/5 \(inception_v3\)"
                     r".*no network\? pass a local path"):
    classifiers.load_classifier("inception_v3")
  with pytest.raises(ClassifierError, match="could not load TF-Hub handle https://x.y/z"):
    classifiers.load_classifier("https://x.y/z")
  assert handle.startswith("https://tfhub.dev/google/imagenet/")


def test_registry_entries():
  assert set(classifiers.REGISTRY) == {"resnet50_v2", "resnet152_v2", "inception_v3",
                                       "mobilenet_v2"}
  assert classifiers.REGISTRY["inception_v3"].input_size == (299, 299)
  for name, entry in classifiers.REGISTRY.items():
    assert entry.hub_handle.endswith("/classification/5"), name
    assert hasattr(keras.applications, entry.keras_application), name


def test_keras_application_source(monkeypatch):
  # Random weights (no download): checks sizes, range and the 1000-way mapping.
  clf = registry.keras_application("mobilenet_v2", weights=None)
  assert (clf.input_size, clf.value_range, clf.num_outputs, clf.label_offset) == (
      (224, 224), "-1_1", 1000, 0)
  assert clf.outputs == "logits" and clf.differentiable
  assert clf(tf.random.uniform([1, 32, 32, 3], seed=0)).shape == (1, 1000)

  def offline(**unused_kwargs):
    raise OSError("URL fetch failure")

  monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
  with pytest.raises(ClassifierError, match="MobileNetV2.*no network"):
    classifiers.load_classifier("keras:mobilenet_v2")


# ----------------------------------------------------------------------------------
# Real models on real images (../shared).

MOBILENET_V2 = "models/tflite/mobilenet_v2_1.0_224_quant.tflite"


def test_real_label_files_align(shared):
  """The TFLite models' labels are background + the sorted synsets of val.txt."""
  model_labels = (shared / "models/tflite/imagenet_labels.txt").read_text().splitlines()
  synsets = (shared / "datasets/imagenet_val_sample/synset_words.txt").read_text()
  assert model_labels[0] == "background"
  assert model_labels[1:] == [line.split(" ", 1)[1] for line in synsets.splitlines()]


def test_real_mobilenet_v2_top1_on_imagenet_sample(shared):
  """Top-1 of the real quantized MobileNet-v2 on the first 100 sorted val images.

  Published top-1 is 70.8 % on the full val set; this sample is easier (79.2 % on all
  1,300 of its images with this preprocessing, experiments/imagenet/preprocessing_check.py),
  and 100 images have a standard error of about 4 points. An off-by-one label mapping
  gives 0-5 % and a wrong scale (0..255 floats) 0 %.
  """
  folder = shared / "datasets/imagenet_val_sample"
  truth = dict(line.split() for line in (folder / "val.txt").read_text().splitlines())
  files = sorted(glob.glob(str(folder / "*.JPEG")))[:100]
  images = tf.stack([image_ops.decode_image(tf.io.read_file(f)) for f in files])
  labels = np.array([int(truth[os.path.basename(f)]) for f in files])
  clf = classifiers.load_classifier(str(shared / MOBILENET_V2), num_threads=1)
  assert (clf.input_size, clf.value_range, clf.num_outputs) == ((224, 224), "uint8", 1001)
  assert clf.outputs == "probabilities"
  predicted = clf.predict(images).numpy()
  accuracy = float(np.mean(predicted == labels))
  assert 0.60 <= accuracy <= 0.92, accuracy

  # Independent path: raw uint8 pixels straight into the interpreter, output index - 1.
  # A wrong value range or quantization in the adapter shows up as disagreement even
  # where accuracy stays plausible (feeding [0, 1] as quantized reals still gets ~72 %).
  interpreter = clf.interpreter
  pixels = tf.cast(tf.round(image_ops.resize(images, 224) * 255.0), tf.uint8).numpy()
  reference = []
  for image in pixels:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
    interpreter.invoke()
    reference.append(np.argmax(interpreter.get_tensor(
        interpreter.get_output_details()[0]["index"])[0]) - 1)
  assert np.mean(np.array(reference) == predicted) >= 0.97


@pytest.mark.shared
def test_float_spec_scores_with_the_rebuild_and_its_exact_gradient(shared):
  """"float:<file>.tflite" is the interpreter classifier's float rebuild as a
  classifier: the same crop / resize / labels, its scores equal `rebuilt_scores`
  (not the interpreter's 1/256-step probabilities), its gradient is their gradient,
  and its top-1 agrees with the interpreter's on real images."""
  path = shared / "models" / "tflite" / "mobilenet_v1_0.25_128_quant.tflite"
  quantized = registry.load_classifier(str(path), crop_fraction=0.875)
  floating = registry.load_classifier(f"float:{path}", crop_fraction=0.875)
  assert floating.name == "mobilenet_v1_0.25_128_quant_float" and floating.differentiable
  assert floating.num_classes == quantized.num_classes == 1000
  folder = shared / "datasets" / "imagenet_val_sample"
  names = sorted(os.listdir(folder))[:16]
  images = tf.stack([tf.image.resize(tf.image.convert_image_dtype(tf.io.decode_jpeg(
      tf.io.read_file(str(folder / n)), channels=3), tf.float32), (160, 160))
                     for n in names if n.endswith(".JPEG")])
  np.testing.assert_allclose(floating(images).numpy(),
                             quantized.rebuilt_scores(images).numpy(), atol=1e-5)
  interpreter = quantized(images).numpy()
  assert np.mean(np.argmax(floating(images).numpy(), 1) == np.argmax(interpreter, 1)) >= 0.8
  steps = np.unique(np.round(np.exp(interpreter) * 256, 3) % 1)
  assert np.allclose(steps, 0, atol=1e-3) or np.allclose(steps, 1, atol=1e-3)  # 1/256
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(images)
    a = tf.reduce_sum(floating(images)[:, 3])
    b = tf.reduce_sum(quantized.rebuilt_scores(images)[:, 3])
  np.testing.assert_allclose(tape.gradient(a, images).numpy(),
                             tape.gradient(b, images).numpy(), atol=1e-6)
  with pytest.raises(base.ClassifierError, match="float:"):
    registry.load_classifier(f"float:{folder}")
