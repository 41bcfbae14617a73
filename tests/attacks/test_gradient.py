"""Tests of the attacks on tiny classifiers trained here on separable synthetic data.

Data: 8x8 RGB noise in [0, 0.8]; the class (0..3) is the quadrant that is 0.2 brighter.
A surrogate MLP and a differently built and seeded CNN both reach ~100 % accuracy in
a couple of seconds; an L-inf budget of 0.1 is enough to flip most of their decisions,
while random-sign noise of the same size is not.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.attacks import bpda
from cdgan_tf.attacks import gradient as attacks
from cdgan_tf.attacks import settings
from cdgan_tf.attacks import stats

NUM_CLASSES = 4
EPS = 0.1


def _quadrant_data(n, seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, NUM_CLASSES, n)
  images = rng.uniform(0.0, 0.8, (n, 8, 8, 3)).astype("float32")
  for i, label in enumerate(labels):
    row, col = divmod(int(label), 2)
    images[i, row * 4:row * 4 + 4, col * 4:col * 4 + 4, :] += 0.2
  return np.clip(images, 0.0, 1.0), labels.astype("int64")


def _train(model, seed):
  images, labels = _quadrant_data(2000, seed)
  model.compile(keras.optimizers.Adam(1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(images, labels, epochs=5, batch_size=64, verbose=0)
  return model


@pytest.fixture(scope="module")
def models():
  keras.utils.set_random_seed(0)
  surrogate = _train(keras.Sequential([
      keras.Input((8, 8, 3)), keras.layers.Flatten(),
      keras.layers.Dense(32, activation="relu"), keras.layers.Dense(NUM_CLASSES)]), 0)
  keras.utils.set_random_seed(1)
  target = _train(keras.Sequential([
      keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
      keras.layers.MaxPooling2D(), keras.layers.Flatten(),
      keras.layers.Dense(NUM_CLASSES)]), 2)
  return surrogate, target


@pytest.fixture(scope="module")
def data():
  return _quadrant_data(256, 7)


def _accuracy(model, images, labels):
  return float(np.mean(np.argmax(model(images), -1) == labels))


def _linf(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _l2(a, b):
  diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  return np.sqrt(np.sum(diff ** 2, axis=(1, 2, 3)))


def test_models_are_accurate(models, data):
  images, labels = data
  for model in models:
    assert _accuracy(model, images, labels) > 0.95


@pytest.mark.parametrize("name, params, max_accuracy", [
    ("fgsm", {}, 0.3),
    ("pgd", {"steps": 10}, 0.3),
    ("pgd", {"steps": 5, "random_start": False}, 0.3),
    ("mifgsm", {"steps": 10}, 0.3),
    # Input diversity trades white-box strength for transferability.
    ("mifgsm", {"steps": 10, "diversity_prob": 0.7}, 0.5),
])
def test_linf_attack_fools_model_within_exact_bound(models, data, name, params,
                                                    max_accuracy):
  surrogate, _ = models
  images, labels = data
  attack = {"fgsm": attacks.fgsm, "pgd": attacks.pgd, "mifgsm": attacks.mifgsm}[name]
  adversarial = attack(surrogate, images, labels, eps="0.1", **params).numpy()
  assert adversarial.shape == images.shape and adversarial.dtype == np.float32
  assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
  assert _linf(adversarial, images) <= EPS + 1e-7
  assert _linf(adversarial, images) > EPS - 1e-3  # The budget is actually used.
  assert _accuracy(surrogate, adversarial, labels) < max_accuracy


def test_pgd_l2_fools_model_within_exact_bound(models, data):
  surrogate, _ = models
  images, labels = data
  eps = 2.0  # ~0.144 per pixel RMS on 192 values.
  adversarial = settings.AttackSettings.parse("pgd_l2", eps, steps=10).run(
      surrogate, images, labels)
  norms = _l2(adversarial, images)
  assert np.all(norms <= eps + 1e-5)
  assert norms.max() > eps * 0.99
  assert float(tf.reduce_min(adversarial)) >= 0.0
  assert float(tf.reduce_max(adversarial)) <= 1.0
  assert _accuracy(surrogate, adversarial, labels) < 0.3


def test_bound_holds_when_clipping_dominates():
  # Saturated images and a linear model push every pixel out of [0, 1].
  images = np.concatenate([np.zeros((2, 8, 8, 3)), np.ones((2, 8, 8, 3)),
                           np.full((2, 8, 8, 3), 0.999)]).astype("float32")
  labels = np.array([0, 1, 0, 1, 0, 1])
  weights = tf.constant(np.random.default_rng(0).standard_normal((192, 2)), tf.float32)
  logits_fn = lambda x: tf.reshape(x, [-1, 192]) @ weights  # noqa: E731
  eps = 8 / 255
  for name in ("fgsm", "pgd", "mifgsm"):
    adv = settings.AttackSettings.parse(name, "8/255").run(logits_fn, images, labels)
    assert _linf(adv, images) <= eps + 1e-7
    assert float(tf.reduce_min(adv)) >= 0 and float(tf.reduce_max(adv)) <= 1
  # Steps larger than the budget: only the projection keeps the bound.
  adv = attacks.mifgsm(logits_fn, images, labels, eps=eps, step_size=eps)
  assert _linf(adv, images) <= eps + 1e-7
  adv = attacks.pgd(logits_fn, images, labels, eps=0.5, norm="l2", step_size=1.0)
  assert np.all(_l2(adv, images) <= 0.5 + 1e-5)


@pytest.mark.parametrize("name", ["fgsm", "pgd", "mifgsm"])
def test_targeted_attack_hits_target(models, data, name):
  surrogate, _ = models
  images, labels = data
  targets = (labels + 1) % NUM_CLASSES
  attack = {"fgsm": attacks.fgsm, "pgd": attacks.pgd, "mifgsm": attacks.mifgsm}[name]
  adversarial = attack(surrogate, images, targets, eps=EPS, targeted=True)
  assert _linf(adversarial, images) <= EPS + 1e-7
  hit_rate = _accuracy(surrogate, adversarial, targets)
  assert hit_rate > 0.5  # Chance is 0.25, and the clean hit rate is ~0.
  assert _accuracy(surrogate, images, targets) < 0.05


def test_mifgsm_transfers_better_than_random_noise(models, data):
  surrogate, target = models
  images, labels = data
  adversarial = attacks.mifgsm(surrogate, images, labels, eps=EPS, steps=10,
                               diversity_prob=0.5, seed=3)
  signs = np.sign(np.random.default_rng(3).standard_normal(images.shape))
  noisy = np.clip(images + EPS * signs, 0.0, 1.0).astype("float32")
  transfer_accuracy = _accuracy(target, adversarial, labels)
  noise_accuracy = _accuracy(target, noisy, labels)
  assert noise_accuracy > 0.9
  assert transfer_accuracy < noise_accuracy - 0.3


def test_ensemble_averages_log_softmax_and_is_attackable(models, data):
  surrogate, target = models
  images, labels = data
  combined = attacks.ensemble([surrogate, target])
  expected = (tf.nn.log_softmax(surrogate(images)) + tf.nn.log_softmax(target(images))) / 2
  np.testing.assert_allclose(combined(images), expected, atol=1e-5)
  adversarial = attacks.pgd([surrogate, target], images, labels, eps=EPS, steps=5)
  assert _linf(adversarial, images) <= EPS + 1e-7
  assert _accuracy(surrogate, adversarial, labels) < 0.5
  assert _accuracy(target, adversarial, labels) < 0.5


def test_attacks_are_deterministic_and_compiled_once(models, data):
  surrogate, _ = models
  images, labels = data
  first = attacks.pgd(surrogate, images[:32], labels[:32], eps=EPS, steps=3, seed=5)
  again = attacks.pgd(surrogate, images[:32], labels[:32], eps=EPS, steps=3, seed=5)
  other = attacks.pgd(surrogate, images[:32], labels[:32], eps=EPS, steps=3, seed=6)
  np.testing.assert_array_equal(first, again)
  assert _linf(first, other) > 0
  traces = attacks.tracing_count(surrogate)
  assert traces >= 1
  attacks.pgd(surrogate, images[32:64], labels[32:64], eps=0.05, steps=4, seed=9)
  assert attacks.tracing_count(surrogate) == traces


def test_input_diversity_keeps_shape_and_changes_input():
  images = tf.random.stateless_uniform((2, 16, 16, 3), [0, 1])
  seed = tf.constant([1, 2], tf.int64)
  same = attacks.input_diversity(images, 0.0, seed)
  np.testing.assert_array_equal(same, images)
  changed = attacks.input_diversity(images, 1.0, seed)
  assert changed.shape == images.shape
  assert _linf(changed, images) > 0.05


def test_bpda_gradient_is_classifier_gradient_at_purified_point(models, data):
  surrogate, _ = models
  images, labels = data
  images, labels = tf.constant(images[:16]), tf.constant(labels[:16])
  # Non-differentiable purifier: JPEG has no registered gradient at all.
  def jpeg(x):
    return tf.map_fn(lambda im: tf.image.adjust_jpeg_quality(im, 50), x)
  # Differentiable but non-trivial purifier: its own gradient must be ignored.
  def squash(x):
    return tf.sqrt(x)

  for purifier in (jpeg, squash):
    with tf.GradientTape() as tape:
      tape.watch(images)
      logits = surrogate(bpda.bpda(purifier)(images))
      loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    grad = tape.gradient(loss, images)
    purified = tf.constant(purifier(images))
    np.testing.assert_allclose(bpda.bpda(purifier)(images), purified)
    with tf.GradientTape() as tape:
      tape.watch(purified)
      loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels, surrogate(purified)))
    expected = tape.gradient(loss, purified)
    assert float(tf.reduce_max(tf.abs(expected))) > 0
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_bpda_of_a_size_changing_purifier_maps_the_gradient_back_through_the_resize():
  """CD-GAN returns its working size: BPDA's approximation is then the bicubic resize."""
  rng = np.random.default_rng(3)
  images = tf.constant(rng.random((2, 20, 20, 3)), tf.float32)
  weights = tf.constant(rng.normal(size=(1, 28, 28, 3)), tf.float32)

  def linear_loss(x):  # A linear "classifier": its gradient is `weights` everywhere.
    return tf.reduce_sum(x * weights)

  def purifier(x):  # 20 -> 28 px, and no gradient of its own.
    return tf.stop_gradient(tf.image.adjust_contrast(tf.image.resize(x, (28, 28)), 0.5))

  with tf.GradientTape() as tape:
    tape.watch(images)
    loss = linear_loss(bpda.bpda(purifier)(images))
  grad = tape.gradient(loss, images)
  # By hand: the gradient of the loss through the antialiased bicubic resize 20 -> 28.
  with tf.GradientTape() as tape:
    tape.watch(images)
    loss = linear_loss(tf.image.resize(images, (28, 28), method="bicubic", antialias=True))
  expected = tape.gradient(loss, images)
  assert grad.shape == images.shape
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
  # An attack through it runs and keeps the input's size.
  labels = tf.constant([0, 1])
  classifier = lambda x: tf.reshape(x, (2, -1))[:, :2] * 10.0  # noqa: E731
  adversarial = attacks.pgd(lambda x: classifier(bpda.bpda(purifier)(x)), images, labels,
                            eps=EPS, steps=2)
  assert adversarial.shape == images.shape


def test_pgd_through_bpda_of_keras_purifier(models, data):
  surrogate, _ = models
  images, labels = data
  keras.utils.set_random_seed(0)
  purifier = keras.Sequential([keras.Input((None, None, 3)),
                               keras.layers.Conv2D(3, 3, padding="same",
                                                   activation="sigmoid")])
  defended = lambda x: surrogate(bpda.bpda(purifier)(x))  # noqa: E731
  adversarial = attacks.pgd(defended, images[:32], labels[:32], eps=EPS, steps=3)
  assert _linf(adversarial, images[:32]) <= EPS + 1e-7
  assert _linf(adversarial, images[:32]) > EPS / 2


def test_perturbation_stats_known_values():
  clean = np.zeros((2, 4, 4, 3), np.float32)
  adversarial = clean.copy()
  adversarial[0] = 2 / 255  # RMSD 2.
  adversarial[1, 0, 0, 0] = 48 / 255  # One of 48 values: RMSD sqrt(48^2 / 48) = sqrt(48).
  measured = stats.perturbation_stats(clean, adversarial)
  assert measured["rmsd_255"] == pytest.approx((2 + np.sqrt(48)) / 2, rel=1e-5)
  assert measured["linf_255"] == pytest.approx(48, rel=1e-5)
  with pytest.raises(ValueError, match="shape"):
    stats.perturbation_stats(clean, clean[:1])


def test_parse_eps():
  assert settings.parse_eps("8/255") == pytest.approx(8 / 255)
  assert settings.parse_eps(" 16/255 ") == pytest.approx(16 / 255)
  assert settings.parse_eps("0.03") == pytest.approx(0.03)
  assert settings.parse_eps(0.5) == 0.5
  for bad in ("abc", "1/0", "-0.1", "8/255/2", "nan"):
    with pytest.raises(ValueError, match="eps"):
      settings.parse_eps(bad)


def test_format_eps_is_the_inverse_of_parse_eps():
  for text in ("8/255", "16/255", "1/255", "0.5/255", "0/255"):
    assert settings.format_eps(settings.parse_eps(text)) == text
  assert settings.format_eps(0.03) == "7.65/255"


def test_bad_arguments_raise_clear_errors(models, data):
  surrogate, _ = models
  images, labels = data
  with pytest.raises(ValueError, match="attack='cw' is not one of fgsm, pgd, pgd_l2, mifgsm"):
    settings.AttackSettings.parse("cw", 0.1)
  with pytest.raises(ValueError, match="decay=0.5 does not apply to attack 'pgd'"):
    settings.AttackSettings.parse("pgd", 0.1, decay=0.5)
  with pytest.raises(ValueError, match="did you mean 8/255"):
    settings.AttackSettings.parse("pgd", "8")
  with pytest.raises(ValueError, match="did you mean 8/255"):
    attacks.fgsm(surrogate, images, labels, eps=8)
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    attacks.fgsm(surrogate, images * 255, labels, eps=0.1)
  with pytest.raises(ValueError, match="labels"):
    attacks.fgsm(surrogate, images, labels[:3], eps=0.1)
  with pytest.raises(ValueError, match="norm"):
    attacks.pgd(surrogate, images, labels, eps=0.1, norm="l1")


def test_attack_settings_defaults_and_record():
  mifgsm = settings.AttackSettings.parse("mifgsm", "16/255", steps=10, diversity_prob=0.5)
  assert mifgsm.effective_step_size == pytest.approx(16 / 255 / 10)
  assert mifgsm.record()["eps_255"] == pytest.approx(16.0)
  pgd = settings.AttackSettings.parse("pgd", "8/255", steps=10)
  assert pgd.effective_step_size == pytest.approx(2.5 * 8 / 255 / 10)
  assert (pgd.decay, pgd.diversity_prob) == (None, None)
  fgsm = settings.AttackSettings.parse("fgsm", 0.1, steps=7)
  assert fgsm.steps == 1 and fgsm.effective_step_size == pytest.approx(0.1)
  given = settings.AttackSettings.parse("pgd", "8/255", step_size="1/255")
  assert given.effective_step_size == pytest.approx(1 / 255)


def test_settings_run_equals_the_attack_function(models, data):
  surrogate, _ = models
  images, labels = data
  images, labels = images[:16], labels[:16]
  pgd = settings.AttackSettings.parse("pgd", "0.05", steps=3)
  np.testing.assert_array_equal(
      pgd.run(surrogate, images, labels, seed=4),
      attacks.pgd(surrogate, images, labels, eps=0.05, steps=3, seed=4))
  mifgsm = settings.AttackSettings.parse("mifgsm", "0.05", steps=3, diversity_prob=0.5)
  np.testing.assert_array_equal(
      mifgsm.run(surrogate, images, labels, seed=4),
      attacks.mifgsm(surrogate, images, labels, eps=0.05, steps=3, diversity_prob=0.5,
                     seed=4))
