"""evaluate.py main() on tiny generated folders with a classifier whose answers are known."""

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
from cdgan_tf.models import generators

FLAGS = flags.FLAGS
CLASSES = ("blue", "green", "red")  # Sorted: label 0 = blue, 1 = green, 2 = red.
SIZE = 16


def _colour_classifier(path):
  """A Keras model whose answer is the dominant colour: logits = channel means (B, G, R)."""
  inputs = keras.Input((SIZE, SIZE, 3))
  means = keras.layers.GlobalAveragePooling2D()(inputs)
  logits = keras.layers.Dense(3, use_bias=False, name="to_labels")(means)
  model = keras.Model(inputs, logits)
  model.get_layer("to_labels").set_weights([np.eye(3, dtype=np.float32)[:, ::-1] * 10])
  model.save(path)
  return path


def _image(rng, channel, size=SIZE):
  pixels = rng.integers(0, 60, (size, size, 3))
  pixels[..., channel] += 150
  return Image.fromarray(pixels.astype(np.uint8))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """4 clean images per class; the adversarial copy of every other one shows a wrong colour."""
  root = tmp_path_factory.mktemp("eval")
  rng = np.random.default_rng(0)
  channel_of = {"red": 0, "green": 1, "blue": 2}
  for label, name in enumerate(CLASSES):
    for side in ("clean", "adversarial"):
      (root / side / name).mkdir(parents=True)
    for i in range(4):
      _image(rng, channel_of[name]).save(root / "clean" / name / f"{i:04d}.png")
      wrong = (channel_of[name] + 1) % 3 if i % 2 else channel_of[name]
      _image(rng, wrong).save(root / "adversarial" / name / f"{i:04d}.png")
  keras.utils.set_random_seed(0)
  for role, build in (("sub", generators.build_sub_generator),
                      ("super", generators.build_super_generator)):
    build(scale=2, num_res_blocks=1, filters=8).save(root / f"{role}.keras")
  return {"root": root, "classifier": _colour_classifier(str(root / "colour.keras"))}


def _main(**settings):
  with flagsaver.flagsaver(**settings):
    FLAGS.mark_as_parsed()
    evaluate.main(["evaluate.py"])


def test_table_with_known_answers(data, tmp_path):
  root = data["root"]
  _main(clean_dir=str(root / "clean"), adversarial_dir=str(root / "adversarial"),
        classifiers=[data["classifier"]], sub_model=str(root / "sub.keras"),
        super_model=str(root / "super.keras"), purifier_size=SIZE,
        defenses=["cdgan", "identity", "bits4"], batch_size=5, output_dir=str(tmp_path))
  results = json.loads((tmp_path / "results.json").read_text())
  entry = results["classifiers"]["colour"]
  assert entry["n"] == 12
  assert entry["normal"] == 1.0
  assert entry["attack"] == 0.5
  # identity passes images through: its accuracies equal the undefended ones.
  assert entry["defenses"]["identity"] == {"defense": 0.5, "defense_clean": 1.0}
  # 4-bit colour keeps the dominant channel of these images.
  assert entry["defenses"]["bits4"] == {"defense": 0.5, "defense_clean": 1.0}
  # CD-GAN's numbers are the top-level defense fields (untrained here: just in range).
  assert 0.0 <= entry["defense"] <= 1.0 and 0.0 <= entry["defense_clean"] <= 1.0
  assert entry["defenses"]["cdgan"]["defense"] == entry["defense"]
  assert results["settings"]["images"] == 12
  markdown = (tmp_path / "results.md").read_text()
  assert "| colour | 12 | 100.00 | 50.00 |" in markdown
  with open(tmp_path / "predictions.csv") as f:
    rows = list(csv.DictReader(f))
  normal = [r for r in rows if r["condition"] == "normal"]
  assert len(normal) == 12 and all(r["prediction"] == r["label"] for r in normal)
  attacked = [r for r in rows if r["condition"] == "attack"]
  assert sum(r["prediction"] == r["label"] for r in attacked) == 6
  for name in ("accuracy.png", "samples.png"):
    with Image.open(tmp_path / name) as image:
      assert image.size[0] > 100 and image.size[1] > 100


def test_clean_only_and_max_images(data, tmp_path):
  _main(clean_dir=str(data["root"] / "clean"), classifiers=[data["classifier"]],
        max_images=5, output_dir=str(tmp_path), num_samples=2)
  entry = json.loads((tmp_path / "results.json").read_text())["classifiers"]["colour"]
  assert entry == {"normal": 1.0, "n": 5}


def test_gradient_attacks_are_reported_with_params(data, tmp_path):
  _main(clean_dir=str(data["root"] / "clean"), classifiers=[data["classifier"]],
        defenses=["identity", "jpeg75"], attack=["pgd_classifier", "pgd_defended", "bpda"],
        eps="100/255", steps=5, output_dir=str(tmp_path), num_samples=0)
  results = json.loads((tmp_path / "results.json").read_text())
  block = results["attacks"]["pgd_classifier"]
  assert block["params"]["eps"] == pytest.approx(100 / 255) and block["params"]["steps"] == 5
  pgd = block["classifiers"]["colour"]
  assert pgd["attack"] < 1.0  # A 100/255 PGD (over half the colour margin) breaks a colour-mean classifier.
  bpda_identity = results["attacks"]["bpda"]["classifiers"]["colour"]["defenses"]["identity"]
  assert bpda_identity["defense"] == pytest.approx(pgd["attack"], abs=0.25)
  # JPEG is not differentiable: pgd_defended skips it and says so; bpda covers it.
  assert "jpeg75" not in results["attacks"]["pgd_defended"]["classifiers"]["colour"].get(
      "defenses", {})
  assert any("jpeg75" in note for note in results["notes"])
  assert "jpeg75" in results["attacks"]["bpda"]["classifiers"]["colour"]["defenses"]


def test_bad_inputs_are_clear_errors(data, tmp_path):
  with pytest.raises(ValueError, match="has no class folders"):
    _main(clean_dir=str(tmp_path), classifiers=[data["classifier"]],
          output_dir=str(tmp_path / "out"))
  with pytest.raises(ValueError, match="need --sub_model"):
    _main(clean_dir=str(data["root"] / "clean"), classifiers=[data["classifier"]],
          defenses=["cdgan"], output_dir=str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out" / "results.json")


def test_exported_purifier_matches_the_generators(data, tmp_path):
  from cdgan_tf import defense, export  # pylint: disable=import-outside-toplevel
  root = data["root"]
  purifier = defense.Purifier.from_files(str(root / "sub.keras"), str(root / "super.keras"),
                                         image_size=SIZE)
  export.export_purifier(purifier, str(tmp_path / "purifier"))
  common = dict(clean_dir=str(root / "clean"), adversarial_dir=str(root / "adversarial"),
                classifiers=[data["classifier"]], num_samples=0)
  _main(purifier=str(tmp_path / "purifier"), output_dir=str(tmp_path / "a"), **common)
  _main(sub_model=str(root / "sub.keras"), super_model=str(root / "super.keras"),
        purifier_size=SIZE, output_dir=str(tmp_path / "b"), **common)
  exported = json.loads((tmp_path / "a" / "results.json").read_text())["classifiers"]
  direct = json.loads((tmp_path / "b" / "results.json").read_text())["classifiers"]
  assert exported == direct
