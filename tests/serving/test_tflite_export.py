"""Tests of the TFLite export of the purifier."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf.defenses import cdgan
from cdgan_tf.models import generators
from cdgan_tf.serving import tflite_export

# Stated tolerances: max abs pixel difference from the Keras purifier, in [0, 1].
FLOAT32_ATOL = 1e-5
FLOAT16_ATOL = 5e-3   # float16 weights (11-bit mantissa).
INT8_ATOL = 0.1       # int8 weights and per-call int8 activations (hybrid kernels).


@pytest.fixture(scope="module")
def purifier():
  keras.utils.set_random_seed(0)
  # 16 filters: 3x3x16x16 kernels are above the converter's 1024-element threshold for
  # dynamic-range quantization, so int8 really quantizes them.
  kwargs = dict(scale=2, num_res_blocks=1, filters=16, image_skip=True)
  models = [generators.build_sub_generator(**kwargs),
            generators.build_super_generator(**kwargs)]
  rng = np.random.default_rng(1)
  for model in models:  # The image-skip tail conv starts at zero: give it weights.
    tail = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)][-1]
    tail.kernel.assign(rng.normal(0, 0.02, tail.kernel.shape).astype("float32"))
  return cdgan.CdganPurifier(*models, image_size=16, scale=2)


def _images(n=3, side=20):
  return np.random.default_rng(0).random((n, side, side, 3)).astype("float32")


@pytest.mark.parametrize("quantization,atol", [("float32", FLOAT32_ATOL),
                                               ("float16", FLOAT16_ATOL),
                                               ("int8", INT8_ATOL)])
def test_exported_tflite_is_close_to_the_keras_purifier(purifier, tmp_path, quantization,
                                                        atol):
  path = tflite_export.export_tflite(purifier, str(tmp_path / f"p_{quantization}.tflite"),
                                     quantization, input_size=20, batch_size=2)
  with open(path, "rb") as f:
    runner = tflite_export.TFLitePurifierRunner(f.read())
  images = _images()  # 3 images through a batch-2 model: chunked and padded.
  out = runner(images)
  ref = purifier(tf.constant(images)).numpy()
  assert out.shape == ref.shape == (3, 16, 16, 3)
  diff = float(np.abs(out - ref).max())
  assert diff < atol, (quantization, diff)
  if quantization != "float32":  # Really reduced precision.
    assert diff > 1e-6
  assert out.min() >= 0.0 and out.max() <= 1.0


def test_quantized_files_are_smaller(purifier):
  sizes = {q: len(tflite_export.convert(purifier, q)) for q in ("float32", "int8")}
  assert sizes["int8"] < 0.6 * sizes["float32"], sizes


def test_bad_requests_are_refused(purifier, tmp_path):
  with pytest.raises(ValueError, match="quantization"):
    tflite_export.convert(purifier, "int4")
  with pytest.raises(ValueError, match="chain"):
    tflite_export.convert(purifier.with_mode("sub_only"))
  path = str(tmp_path / "p.tflite")
  open(path, "wb").close()
  with pytest.raises(FileExistsError):
    tflite_export.export_tflite(purifier, path)
  assert os.path.getsize(path) == 0
  runner = tflite_export.TFLitePurifierRunner(tflite_export.convert(purifier, "float32"))
  with pytest.raises(ValueError, match="takes"):
    runner(_images(side=20))


@pytest.mark.slow
def test_export_defended_writes_the_tflite_purifier(purifier, tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tests.conftest import REPO_ROOT  # pylint: disable=g-import-not-at-top
  sub, sup = purifier.trained_generators
  sub.save(str(tmp_path / "sub.keras"))
  sup.save(str(tmp_path / "super.keras"))
  run = subprocess.run(
      [sys.executable, "export_defended.py", f"--sub_model={tmp_path / 'sub.keras'}",
       f"--super_model={tmp_path / 'super.keras'}", f"--export_dir={tmp_path / 'out'}",
       "--tflite=float16", "--image_size=16", "--tflite_input_size=20",
       "--tflite_batch=3"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
  assert run.returncode == 0, run.stderr[-2000:]
  path = tmp_path / "out" / "purifier_float16.tflite"
  assert str(path) in run.stdout
  runner = tflite_export.TFLitePurifierRunner(path.read_bytes())
  images = _images()
  diff = np.abs(runner(images) - purifier(tf.constant(images)).numpy()).max()
  assert diff < FLOAT16_ATOL
