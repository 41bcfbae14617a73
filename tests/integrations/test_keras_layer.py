"""Tests of `PurifierLayer`: values, the Keras model round trip, the saved source, and
loading a saved model in a new process after plain `import cdgan_tf`."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import cdgan_tf
from cdgan_tf import image_ops
from cdgan_tf.defenses import baselines
from cdgan_tf.defenses import cdgan
from cdgan_tf.models import generators
from cdgan_tf.serving import saving
from tests.conftest import REPO_ROOT


def _tiny_purifier():
  keras.utils.set_random_seed(0)
  sub = generators.build_sub_generator(scale=2, num_res_blocks=1, filters=8)
  sup = generators.build_super_generator(scale=2, num_res_blocks=1, filters=8)
  return cdgan.CdganPurifier(sub, sup, image_size=16, scale=2)


def _tiny_classifier(size=12):
  keras.utils.set_random_seed(1)
  return keras.Sequential([keras.Input((size, size, 3)), keras.layers.Conv2D(4, 3),
                           keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])


def test_layer_equals_purifier_then_resize_then_classifier():
  purifier, classifier = _tiny_purifier(), _tiny_classifier()
  images = tf.random.uniform((3, 20, 14, 3), seed=2)
  layer = cdgan_tf.PurifierLayer(purifier, output_size=12)
  expected = classifier(image_ops.resize(purifier(images), 12))
  model = keras.Sequential([keras.Input((None, None, 3)), layer, classifier])
  np.testing.assert_allclose(model(images), expected, atol=1e-5)
  assert layer.compute_output_shape((None, 20, 14, 3)) == (None, 12, 12, 3)
  # Without output_size: the purifier's working size.
  plain = cdgan_tf.PurifierLayer(purifier)
  np.testing.assert_allclose(plain(images), purifier(images), atol=1e-6)


def test_saved_model_loads_back_with_the_same_outputs(tmp_path):
  purifier, classifier = _tiny_purifier(), _tiny_classifier()
  inputs = keras.Input((None, None, 3))
  outputs = classifier(cdgan_tf.PurifierLayer(purifier, output_size=12)(inputs))
  model = keras.Model(inputs, outputs)  # the functional API
  images = tf.random.uniform((2, 24, 24, 3), seed=3)
  before = model(images).numpy()
  path = str(tmp_path / "defended.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  np.testing.assert_allclose(loaded(images), before, atol=1e-6)
  # The generators travel in the file: other weights give other outputs.
  layer = [l for l in loaded.layers if isinstance(l, cdgan_tf.PurifierLayer)][0]
  assert layer.purifier.sub_generator is layer.sub_generator
  layer.sub_generator.set_weights([w * 0.5 for w in layer.sub_generator.get_weights()])
  assert np.abs(loaded(images).numpy() - before).max() > 1e-3


def test_a_saved_model_purifier_is_recorded_by_path(tmp_path):
  exported = saving.export_purifier(_tiny_purifier(), str(tmp_path / "purifier"),
                                    overwrite=True)
  model = keras.Sequential([keras.Input((16, 16, 3)), cdgan_tf.PurifierLayer(exported)])
  images = tf.random.uniform((1, 16, 16, 3), seed=4)
  model.save(str(tmp_path / "m.keras"))
  loaded = keras.models.load_model(str(tmp_path / "m.keras"))
  np.testing.assert_allclose(loaded(images), model(images), atol=1e-6)
  assert loaded.layers[0].get_config()["purifier"] == exported


def test_unsaveable_and_low_precision_purifiers_are_refused():
  layer = cdgan_tf.PurifierLayer(baselines.make_baseline("jpeg75", image_size=16, scale=2))
  with pytest.raises(ValueError, match="give it as a path"):
    layer.get_config()
  low = _tiny_purifier()
  low = cdgan.CdganPurifier(*low.trained_generators, 16, 2, compute_dtype="bfloat16")
  with pytest.raises(ValueError, match="float32"):
    cdgan_tf.PurifierLayer(low)


_LOAD_IN_A_NEW_PROCESS = """
import sys
import numpy as np
{first}
loaded = keras.models.load_model(sys.argv[1])
np.save(sys.argv[3], np.asarray(loaded(np.load(sys.argv[2]))))
"""


@pytest.mark.parametrize("first", ["import cdgan_tf\nimport keras",
                                   "import keras\nimport cdgan_tf",
                                   "import tensorflow as tf\nimport cdgan_tf\nkeras = tf.keras",
                                   # Keras first imported halfway through a cdgan_tf module.
                                   "from cdgan_tf.defenses import cdgan\nimport keras"],
                         ids=["cdgan_tf_then_keras", "keras_then_cdgan_tf", "via_tf_keras",
                              "inside_a_library_import"])
def test_a_saved_model_loads_in_a_new_process_after_import_cdgan_tf(tmp_path, first):
  model = keras.Sequential([keras.Input((None, None, 3)),
                            cdgan_tf.PurifierLayer(_tiny_purifier(), output_size=12),
                            _tiny_classifier()])
  images = tf.random.uniform((2, 20, 20, 3), seed=5).numpy()
  model.save(str(tmp_path / "defended.keras"))
  np.save(tmp_path / "images.npy", images)
  code = _LOAD_IN_A_NEW_PROCESS.format(first=first)
  done = subprocess.run(
      [sys.executable, "-c", code, str(tmp_path / "defended.keras"),
       str(tmp_path / "images.npy"), str(tmp_path / "out.npy")],
      capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
      env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
  assert done.returncode == 0, done.stderr[-3000:]
  np.testing.assert_allclose(np.load(tmp_path / "out.npy"), model(images), atol=1e-5)


def test_import_cdgan_tf_imports_neither_keras_nor_tensorflow():
  code = ("import sys, cdgan_tf\n"
          "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules\n"
          "print('ok')")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=120, cwd=REPO_ROOT)
  assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
