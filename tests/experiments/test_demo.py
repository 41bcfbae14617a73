"""`make demo`'s path on a handful of images with the shipped weights."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT

WEIGHTS = REPO_ROOT / "weights" / "cifar10"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


def _data_dir(tmp_path, shared_root):
  """Real CIFAR-10 when ../shared is there, else a tiny set of random 32x32 images."""
  real = shared_root / "datasets" / "cifar10"
  if (real / "test").is_dir():
    return real
  rng = np.random.default_rng(0)
  for name in CLASSES:
    folder = tmp_path / "cifar" / "test" / name
    folder.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
        folder / "0000.png")
  return tmp_path / "cifar"


@pytest.mark.slow
def test_demo_on_a_few_images(tmp_path):
  from tests.conftest import shared_dir  # pylint: disable=import-outside-toplevel
  for name in ("resnet_v2", "mobilenet_v2", "inception", "vgg_surrogate"):
    assert (WEIGHTS / f"{name}.keras").is_file(), f"shipped weights missing: {name}"
  for role in ("sub", "super"):
    assert (WEIGHTS / "cdgan" / role / "generator.keras").is_file()
  out = tmp_path / "demo"
  env = dict(os.environ, PY=sys.executable, DEMO_IMAGES="6", DEMO_OUTPUT=str(out),
             CDGAN_DATA_DIR=str(_data_dir(tmp_path, shared_dir())),
             TF_CPP_MIN_LOG_LEVEL="3")
  run = subprocess.run(["bash", str(REPO_ROOT / "experiments" / "cifar10" / "demo.sh")],
                       env=env, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "| resnet_v2 | 6 |" in run.stdout
  results = json.loads((out / "results.json").read_text())
  assert set(results["classifiers"]) == {"resnet_v2", "mobilenet_v2", "inception"}
  for entry in results["classifiers"].values():
    assert entry["n"] == 6
    assert set(entry["defenses"]) == {"cdgan", "resize", "jpeg75", "bits4", "median3"}
    for value in (entry["normal"], entry["attack"], entry["defense"], entry["defense_clean"]):
      assert 0.0 <= value <= 1.0
  for name in ("results.md", "accuracy.png", "samples.png", "predictions.csv",
               "adversarial/attack_manifest.json"):
    assert (out / name).is_file(), name
  for name in ("purifier", "resnet_v2", "mobilenet_v2", "inception"):
    assert (out / "exported" / name / "saved_model.pb").is_file(), name
