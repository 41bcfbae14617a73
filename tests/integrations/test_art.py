"""Tests of the ART adapter against ART itself (skipped when ART is not installed)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

art = pytest.importorskip(
    "art", reason="adversarial-robustness-toolbox is not installed (pip install '.[art]')")
from art.attacks.evasion import ProjectedGradientDescent  # noqa: E402
from art.estimators.classification import TensorFlowV2Classifier  # noqa: E402

from cdgan_tf import image_ops  # noqa: E402
from cdgan_tf.attacks import bpda  # noqa: E402
from cdgan_tf.attacks import gradient  # noqa: E402
from cdgan_tf.defenses import cdgan  # noqa: E402
from cdgan_tf.integrations import art as art_adapter  # noqa: E402
from cdgan_tf.models import generators  # noqa: E402

EPS, STEP, STEPS = 6 / 255, 2 / 255, 4  # 4 steps of 2/255 reach the 6/255 bound


def _tiny_purifier():
  keras.utils.set_random_seed(0)
  sub = generators.build_sub_generator(scale=2, num_res_blocks=1, filters=8)
  sup = generators.build_super_generator(scale=2, num_res_blocks=1, filters=8)
  return cdgan.CdganPurifier(sub, sup, image_size=16, scale=2)


def _tiny_classifier():
  keras.utils.set_random_seed(1)
  return keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(6, 3),
                           keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(),
                           keras.layers.Dense(4)])


def _art_pgd(preprocessor, model, images, labels):
  estimator = TensorFlowV2Classifier(
      model, nb_classes=4, input_shape=images.shape[1:], clip_values=(0.0, 1.0),
      loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      preprocessing_defences=[preprocessor])
  attack = ProjectedGradientDescent(estimator, norm=np.inf, eps=EPS, eps_step=STEP,
                                    max_iter=STEPS, num_random_init=0,
                                    batch_size=len(images), verbose=False)
  return attack.generate(images, y=labels), estimator


@pytest.mark.parametrize("use_bpda", [False, True])
def test_art_pgd_equals_the_project_pgd_through_the_same_purifier(use_bpda):
  purifier, model = _tiny_purifier(), _tiny_classifier()
  images = np.asarray(tf.random.uniform((4, 12, 12, 3), seed=5), np.float32)
  labels = np.array([0, 1, 2, 3])
  preprocessor = art_adapter.CdganPreprocessor(purifier, bpda=use_bpda)
  x_art, estimator = _art_pgd(preprocessor, model, images, labels)

  purify = lambda x: image_ops.resize(purifier(x), tf.shape(x)[1:3])  # noqa: E731
  front = bpda.bpda(purify) if use_bpda else purify
  logits_fn = lambda x: model(front(x))  # noqa: E731
  x_own = gradient.pgd(logits_fn, images, labels, EPS, steps=STEPS, step_size=STEP,
                       random_start=False).numpy()
  assert np.abs(x_own - images).max() > EPS - 1e-6  # the attack moved the images
  np.testing.assert_allclose(x_art, x_own, atol=1e-5)
  # ART's predictions go through the purifier too.
  np.testing.assert_allclose(estimator.predict(x_art), logits_fn(x_art), atol=1e-5)


def test_bpda_changes_the_gradient_but_not_the_forward_pass():
  purifier, model = _tiny_purifier(), _tiny_classifier()
  images = np.asarray(tf.random.uniform((2, 12, 12, 3), seed=6), np.float32)
  exact = art_adapter.CdganPreprocessor(purifier)
  approx = art_adapter.CdganPreprocessor(purifier, bpda=True)
  np.testing.assert_allclose(exact(images)[0], approx(images)[0], atol=1e-6)
  x = tf.convert_to_tensor(images)
  grads = []
  for preprocessor in (exact, approx):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(model(preprocessor.forward(x)[0]))
    grads.append(tape.gradient(loss, x))
  # BPDA: the gradient is the classifier's at the purified images (the identity).
  with tf.GradientTape() as tape:
    purified = tf.convert_to_tensor(exact(images)[0])
    tape.watch(purified)
    loss = tf.reduce_sum(model(purified))
  np.testing.assert_allclose(grads[1], tape.gradient(loss, purified), atol=1e-6)
  assert np.abs(grads[0] - grads[1]).max() > 1e-4


def test_black_box_classifier_returns_probabilities_of_the_defended_model():
  purifier, model = _tiny_purifier(), _tiny_classifier()
  images = np.asarray(tf.random.uniform((5, 30, 20, 3), seed=7), np.float32)
  box = art_adapter.black_box_classifier(purifier, model, (30, 20, 3), nb_classes=4,
                                         batch_size=2)
  expected = tf.nn.softmax(model(image_ops.resize(purifier(images), 12))).numpy()
  np.testing.assert_allclose(box.predict(images), expected, atol=1e-6)
  assert box.input_shape == (30, 20, 3) and box.nb_classes == 4
  assert not box.channels_first
