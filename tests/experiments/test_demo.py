"""`make demo`'s path on a handful of images with the shipped weights."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

WEIGHTS = REPO_ROOT / "weights" / "cifar10"


@pytest.mark.slow
def test_demo_on_a_few_images_of_the_built_in_sample(tmp_path):
  """No ../shared and no network needed: the demo's default data are in the repo."""
  for name in ("resnet_v2", "mobilenet_v2", "inception", "vgg_surrogate"):
    assert (WEIGHTS / f"{name}.keras").is_file(), f"shipped weights missing: {name}"
  for role in ("sub", "super"):
    assert (WEIGHTS / "cdgan" / role / "generator.keras").is_file()
  out = tmp_path / "demo"
  # PYTHONPATH: this checkout's library, also where the venv's editable install points
  # at another checkout (a git worktree sharing one venv).
  env = dict(os.environ, PY=sys.executable, DEMO_IMAGES="6", DEMO_OUTPUT=str(out),
             PYTHONPATH=str(REPO_ROOT))
  env.pop("CDGAN_DATA_DIR", None)
  run = subprocess.run(["bash", str(REPO_ROOT / "experiments" / "cifar10" / "demo.sh")],
                       env=env, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "| resnet_v2 | 6 |" in run.stdout
  assert "95 % Wilson" in run.stdout and " ± " in run.stdout  # the table shows intervals
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
  assert (out / "exported" / "cdgan_resnet_v2" / "saved_model.pb").is_file()
  # A quiet terminal: our progress lines, no TensorFlow log lines, the table at the end.
  assert "experiments/cifar10/sample" in run.stdout
  assert not [l for l in run.stderr.splitlines() if l.startswith(("I0000", "W0000", "E0000"))]
  assert run.stdout.rstrip().splitlines()[-1].strip().startswith("exported/")
