"""Tests of the shipped presets and `load_purifier` (names, folders, pairs, SavedModels)."""

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import cdgan_tf
from cdgan_tf import image_ops
from cdgan_tf import pretrained
from cdgan_tf.defenses import cdgan
from cdgan_tf.models import generator_files
from cdgan_tf.models import generators
from cdgan_tf.serving import saving

# name -> (folder, image_size, scale, sub step, super step), as the weights record them.
EXPECTED = {"imagenet-128": ("imagenet/cdgan_scale2", 256, 2, 2000, 1500),
            "imagenet-64": ("imagenet/cdgan", 256, 4, 3000, 3000),
            "imagenet-256": ("imagenet/cdgan_scale1", 256, 1, 400, 300),
            "cifar10": ("cifar10/cdgan", 32, 2, 4000, 4000),
            "cifar10-mix": ("cifar10/cdgan_mix", 32, 2, 1000, 1000)}


def test_presets_match_the_shipped_weights_and_have_cards():
  table = cdgan_tf.presets()
  assert list(table) == list(EXPECTED)
  for name, (folder, size, scale, sub_step, super_step) in EXPECTED.items():
    preset = table[name]
    assert preset.folder == folder and "\n" not in preset.description
    for role, step in (("sub", sub_step), ("super", super_step)):
      info = generator_files.read_info(str(preset.path / role))
      assert (info.image_size, info.scale, info.step) == (size, scale, step)
      assert (preset.image_size, preset.scale) == (size, scale)
    card = preset.card()
    assert card.startswith("# Model card") and str(size) in card
    assert f"{sub_step:,}" in card and f"{super_step:,}" in card
    # The description's steps are the weights' own.
    assert f"{sub_step:,} + {super_step:,} steps" in preset.description


def test_the_package_weights_folder_is_the_repository_weights():
  assert pretrained.weights_dir().samefile(pretrained.weights_dir().parent.parent / "weights")


def test_load_purifier_by_name_equals_the_generators_by_hand():
  purifier = cdgan_tf.load_purifier("cifar10")
  sub, _ = generator_files.load_generator("weights/cifar10/cdgan/sub")
  sup, _ = generator_files.load_generator("weights/cifar10/cdgan/super")
  images = tf.random.uniform((2, 40, 28, 3), seed=3)
  expected = tf.clip_by_value(sup(sub(image_ops.resize(images, 32))), 0.0, 1.0)
  np.testing.assert_allclose(purifier(images), expected, atol=1e-5)
  assert (purifier.image_size, purifier.scale) == (32, 2)


def _tiny_pair(folder, sub_model_record=""):
  keras.utils.set_random_seed(0)
  sub = generators.build_sub_generator(scale=2, num_res_blocks=1, filters=8)
  sup = generators.build_super_generator(scale=2, num_res_blocks=1, filters=8)
  generator_files.save_generator(sub, generator_files.GeneratorInfo("sub", 2, 16),
                                 str(folder / "sub"))
  generator_files.save_generator(
      sup, generator_files.GeneratorInfo("super", 2, 16, sub_model=sub_model_record),
      str(folder / "super"))
  return sub, sup


def test_load_purifier_from_a_folder_a_pair_a_super_and_a_saved_model(tmp_path, monkeypatch):
  sub, sup = _tiny_pair(tmp_path / "gans", sub_model_record=str(tmp_path / "gans" / "sub"))
  images = tf.random.uniform((2, 20, 20, 3), seed=4)
  expected = cdgan.CdganPurifier(sub, sup, image_size=16, scale=2)(images)
  loaded = [cdgan_tf.load_purifier(str(tmp_path / "gans")),
            cdgan_tf.load_purifier((str(tmp_path / "gans" / "sub"),
                                    str(tmp_path / "gans" / "super"))),
            cdgan_tf.load_purifier(str(tmp_path / "gans" / "super"))]
  exported = saving.export_purifier(loaded[0], str(tmp_path / "exported"), overwrite=True)
  loaded.append(cdgan_tf.load_purifier(exported))
  for purifier in loaded:
    np.testing.assert_allclose(purifier(images), expected, atol=1e-5)
  assert type(loaded[-1]).__name__ == "ExportedPurifier"
  with pytest.raises(ValueError, match="exported purifier"):
    cdgan_tf.load_purifier(exported, compute_dtype="bfloat16")


def test_sub_model_relative_to_the_package_resolves_from_any_folder(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # "weights/..." does not exist here
  info = generator_files.read_info(str(pretrained.weights_dir() / "imagenet/cdgan_scale2/super"))
  assert info.sub_model == "weights/imagenet/cdgan_scale2/sub"
  resolved = generator_files.resolve_sub_model(
      str(pretrained.weights_dir() / "imagenet/cdgan_scale2/super"))
  assert resolved and tf.io.gfile.exists(f"{resolved}/generator.keras")
  assert pretrained.resolve(str(pretrained.weights_dir() / "cifar10/cdgan/super"))[0] == "pair"


def test_unknown_source_names_the_presets(tmp_path):
  with pytest.raises(ValueError, match="imagenet-128, imagenet-64, imagenet-256, cifar10, cifar10-mix"):
    cdgan_tf.load_purifier("imagenet-512")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="neither a preset"):
    cdgan_tf.load_purifier(str(tmp_path / "empty"))
