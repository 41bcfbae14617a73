"""evaluate.py main() on tiny folders, with a classifier and a CD-GAN whose answers are known.

The classifier answers the dominant colour (logits = channel means). The "generators"
are fixed transforms saved as real generator files: the sub generator averages 2x2
blocks (the colour means are unchanged) and the super generator upsamples and inverts
the colours (x -> 1 - x), so behind CD-GAN the classifier answers the WEAKEST colour.
Every image is built so that its weakest colour is known:

  clean image of class c          strong c, middle next(c), weak prev(c)
  adversarial, attacked (3 of 4)  strong next(c), middle prev(c), weak c
  adversarial, not attacked       the clean image's colours

so each defense's exact accuracy is known in advance (see `EXPECTED`).
"""

import csv
import json
import os

from absl import flags
from absl.testing import flagsaver
import keras
import numpy as np
import pytest
from PIL import Image

import evaluate
from cdgan_tf.models import generator_files
from tfrecords_builder import builder

FLAGS = flags.FLAGS
CLASSES = ("blue", "green", "red")  # Sorted: label 0 = blue, 1 = green, 2 = red.
CHANNEL = {"red": 0, "green": 1, "blue": 2}
SIZE, SCALE, PER_CLASS = 16, 2, 4
# (normal or defense, clean or adversarial) accuracies per defense on this data.
EXPECTED = {
    "none": {"normal": 1.0, "attack": 0.25},
    "cdgan": {"defense_clean": 0.0, "defense": 0.75},       # inverts: weakest colour wins
    "super_only": {"defense_clean": 0.0, "defense": 0.75},  # bicubic down, then inverts
    "sub_only": {"defense_clean": 1.0, "defense": 0.25},    # averages, bicubic up
    "identity": {"defense_clean": 1.0, "defense": 0.25},
    "resize": {"defense_clean": 1.0, "defense": 0.25},
}


def _colour_classifier(path):
  """A Keras model whose answer is the dominant colour: logits = channel means (B, G, R)."""
  inputs = keras.Input((SIZE, SIZE, 3))
  means = keras.layers.GlobalAveragePooling2D()(inputs)
  logits = keras.layers.Dense(3, use_bias=False, name="to_labels")(means)
  model = keras.Model(inputs, logits)
  model.get_layer("to_labels").set_weights([np.eye(3, dtype=np.float32)[:, ::-1] * 10])
  model.save(path)
  return path


def _known_generators(folder):
  """sub: 2x2 average pooling; super: nearest x2 upsampling, then x -> 1 - x."""
  images = keras.Input((None, None, 3))
  sub = keras.Model(images, keras.layers.AveragePooling2D(SCALE)(images))
  images = keras.Input((None, None, 3))
  up = keras.layers.UpSampling2D(SCALE)(images)
  invert = keras.layers.Conv2D(3, 1, name="invert")
  sup = keras.Model(images, invert(up))
  invert.set_weights([-np.eye(3, dtype=np.float32)[None, None], np.ones(3, np.float32)])
  for role, model in (("sub", sub), ("super", sup)):
    info = generator_files.GeneratorInfo(role=role, scale=SCALE, image_size=SIZE)
    generator_files.save_generator(model, info, str(folder / role))
  return str(folder / "sub"), str(folder / "super")


def _image(rng, strong, middle, weak):
  pixels = np.zeros((SIZE, SIZE, 3))
  for channel, level in ((strong, 200), (middle, 110), (weak, 20)):
    pixels[..., channel] = level + rng.integers(0, 10, (SIZE, SIZE))
  return Image.fromarray(pixels.astype(np.uint8))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp("eval")
  rng = np.random.default_rng(0)
  for name in CLASSES:
    c = CHANNEL[name]
    nxt, prv = (c + 1) % 3, (c + 2) % 3
    for side in ("clean", "adversarial"):
      (root / side / name).mkdir(parents=True)
    for i in range(PER_CLASS):
      _image(rng, c, nxt, prv).save(root / "clean" / name / f"{i:04d}.png")
      attacked = (nxt, prv, c) if i < 3 else (c, nxt, prv)
      _image(rng, *attacked).save(root / "adversarial" / name / f"{i:04d}.png")
  sub, sup = _known_generators(root)
  return {"root": root, "classifier": _colour_classifier(str(root / "colour.keras")),
          "sub": sub, "super": sup}


def _main(**settings):
  with flagsaver.flagsaver(**settings):
    FLAGS.mark_as_parsed()
    evaluate.main(["evaluate.py"])


def _accuracies(entry):
  """An entry's accuracy fields, without the intervals and tests (see test_table)."""
  return {k: v for k, v in entry.items() if k not in ("ci95", "p_value", "worst_case")}


def _check_expected(entry):
  assert entry["n"] == 3 * PER_CLASS
  assert (entry["normal"], entry["attack"]) == (1.0, 0.25)
  for defense, values in EXPECTED.items():
    if defense in entry.get("defenses", {}):
      assert _accuracies(entry["defenses"][defense]) == values, defense
  assert (entry["defense"], entry["defense_clean"]) == (0.75, 0.0)  # CD-GAN's, top level.


def test_table_with_known_answers(data, tmp_path):
  root = data["root"]
  _main(clean_dir=str(root / "clean"), adversarial_dir=str(root / "adversarial"),
        classifiers=[data["classifier"]], sub_model=data["sub"], super_model=data["super"],
        defenses=list(EXPECTED)[1:], batch_size=5, output_dir=str(tmp_path))
  results = json.loads((tmp_path / "results.json").read_text())
  entry = results["classifiers"]["colour"]
  _check_expected(entry)
  assert set(entry["defenses"]) == set(EXPECTED) - {"none"}
  assert results["settings"]["images"] == 12
  markdown = (tmp_path / "results.md").read_text()
  assert ("| colour | 12 | 100.0 ± 12.1 | 25.0 ± 22.2 | 75.0 ± 22.2 | 0.0 ± 12.1 | "
          "75.0 ± 22.2 (transfer) |") in markdown
  with open(tmp_path / "predictions.csv") as f:
    rows = list(csv.DictReader(f))
  normal = [r for r in rows if r["condition"] == "normal"]
  assert len(normal) == 12 and all(r["prediction"] == r["label"] for r in normal)
  attacked = [r for r in rows if r["condition"] == "attack"]
  assert sum(r["prediction"] == r["label"] for r in attacked) == 3
  for name in ("accuracy.png", "samples.png"):
    with Image.open(tmp_path / name) as image:
      assert image.size[0] > 100 and image.size[1] > 100


def test_records_stream_gives_the_same_table(data, tmp_path):
  root = data["root"]
  builder.build(str(root / "adversarial"), str(root / "clean"), str(tmp_path / "records"),
                val_fraction=0.0, num_shards=2)
  _main(records=str(tmp_path / "records" / "train-*"), classifiers=[data["classifier"]],
        sub_model=data["sub"], super_model=data["super"], defenses=list(EXPECTED)[1:],
        batch_size=5, output_dir=str(tmp_path / "out"), num_samples=0)
  results = json.loads((tmp_path / "out" / "results.json").read_text())
  _check_expected(results["classifiers"]["colour"])
  assert "2 record files" in results["settings"]["inputs"]


def test_clean_only_and_max_images(data, tmp_path):
  _main(clean_dir=str(data["root"] / "clean"), classifiers=[data["classifier"]],
        max_images=5, output_dir=str(tmp_path), num_samples=2)
  entry = json.loads((tmp_path / "results.json").read_text())["classifiers"]["colour"]
  assert _accuracies(entry) == {"normal": 1.0, "n": 5}


def test_gradient_attacks_are_reported_with_params(data, tmp_path):
  _main(clean_dir=str(data["root"] / "clean"), classifiers=[data["classifier"]],
        defenses=["identity", "jpeg75"], attack=["pgd_classifier", "pgd_defended", "bpda"],
        eps="100/255", steps=5, output_dir=str(tmp_path), num_samples=0)
  results = json.loads((tmp_path / "results.json").read_text())
  block = results["attacks"]["pgd_classifier"]
  assert block["params"]["eps"] == pytest.approx(100 / 255) and block["params"]["steps"] == 5
  pgd = block["classifiers"]["colour"]
  assert pgd["attack"] < 1.0  # 100/255 (over the colour margin) breaks a colour-mean classifier.
  # BPDA through the identity is plain PGD: the same images, the same accuracy, exactly.
  bpda_identity = results["attacks"]["bpda"]["classifiers"]["colour"]["defenses"]["identity"]
  assert bpda_identity["defense"] == pgd["attack"]
  pgd_identity = results["attacks"]["pgd_defended"]["classifiers"]["colour"]["defenses"]
  assert pgd_identity["identity"]["defense"] == pgd["attack"]
  # JPEG is not differentiable: pgd_defended skips it and says so; bpda covers it.
  assert "jpeg75" not in pgd_identity
  assert any("jpeg75" in note for note in results["notes"])
  assert "jpeg75" in results["attacks"]["bpda"]["classifiers"]["colour"]["defenses"]


def test_bad_inputs_are_clear_errors(data, tmp_path):
  (tmp_path / "empty").mkdir()  # Not the parent of --output_dir, which is made (locked) first.
  with pytest.raises(ValueError, match="has no class folders"):
    _main(clean_dir=str(tmp_path / "empty"), classifiers=[data["classifier"]],
          output_dir=str(tmp_path / "out"))
  with pytest.raises(ValueError, match="needs --sub_model"):
    _main(clean_dir=str(data["root"] / "clean"), classifiers=[data["classifier"]],
          defenses=["cdgan"], output_dir=str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out" / "results.json")


def test_exported_purifier_matches_the_generators(data, tmp_path):
  from cdgan_tf.defenses import cdgan  # pylint: disable=import-outside-toplevel
  from cdgan_tf.serving import saving  # pylint: disable=import-outside-toplevel
  root = data["root"]
  purifier = cdgan.CdganPurifier.from_files(data["sub"], data["super"])
  saving.export_purifier(purifier, str(tmp_path / "purifier"))
  common = dict(clean_dir=str(root / "clean"), adversarial_dir=str(root / "adversarial"),
                classifiers=[data["classifier"]], num_samples=0, defenses=["cdgan", "resize"])
  _main(purifier=str(tmp_path / "purifier"), output_dir=str(tmp_path / "a"), **common)
  _main(sub_model=data["sub"], super_model=data["super"], output_dir=str(tmp_path / "b"),
        **common)
  exported = json.loads((tmp_path / "a" / "results.json").read_text())["classifiers"]
  direct = json.loads((tmp_path / "b" / "results.json").read_text())["classifiers"]
  assert exported == direct
  _check_expected(direct["colour"])


def test_white_box_attack_goes_through_the_defense(data, tmp_path):
  """pgd_defended differentiates through CD-GAN; pgd_classifier ignores it.

  Behind the inverting CD-GAN the classifier answers the weakest colour. PGD on the
  classifier alone (100/255) lowers the true colour, which CD-GAN then turns into the
  right answer; PGD through CD-GAN attacks the defended model, which is already wrong
  on every clean image.
  """
  _main(clean_dir=str(data["root"] / "clean"), classifiers=[data["classifier"]],
        sub_model=data["sub"], super_model=data["super"], defenses=["cdgan"],
        attack=["pgd_classifier", "pgd_defended"], eps="100/255", steps=5,
        output_dir=str(tmp_path), num_samples=0)
  attacks = json.loads((tmp_path / "results.json").read_text())["attacks"]
  ignoring = attacks["pgd_classifier"]["classifiers"]["colour"]
  assert ignoring["attack"] == 0.0 and ignoring["defenses"]["cdgan"]["defense"] == 1.0
  assert _accuracies(attacks["pgd_defended"]["classifiers"]["colour"]["defenses"][
      "cdgan"]) == {"defense": 0.0}


def test_gradient_attacks_on_a_tflite_classifier(data, tmp_path):
  """PGD on a .tflite classifier: gradients from the float rebuild, accuracies from the
  interpreter; the same numbers as the Keras model it was converted from."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  model = keras.models.load_model(data["classifier"])
  tflite_path = tmp_path / "colour_lite.tflite"
  tflite_path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
  common = dict(clean_dir=str(data["root"] / "clean"), defenses=["identity"],
                attack=["pgd_classifier", "bpda"], eps="100/255", steps=5, num_samples=0)
  _main(classifiers=[str(tflite_path)], output_dir=str(tmp_path / "lite"), **common)
  _main(classifiers=[data["classifier"]], output_dir=str(tmp_path / "keras"), **common)
  lite = json.loads((tmp_path / "lite" / "results.json").read_text())
  reference = json.loads((tmp_path / "keras" / "results.json").read_text())
  for attack in ("pgd_classifier", "bpda"):
    assert (lite["attacks"][attack]["classifiers"]["colour_lite"]
            == reference["attacks"][attack]["classifiers"]["colour"])
  assert lite["attacks"]["pgd_classifier"]["classifiers"]["colour_lite"]["attack"] < 1.0
  assert any("float rebuild" in note for note in lite["notes"])
