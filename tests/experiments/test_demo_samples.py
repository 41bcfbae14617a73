"""The demo's sample grid script on a few built-in sample images (shipped weights)."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

SAMPLE = REPO_ROOT / "experiments" / "cifar10" / "sample" / "test"


@pytest.mark.slow
def test_demo_samples_picks_classes_and_outcomes(tmp_path):
  classes = sorted(p.name for p in SAMPLE.iterdir() if p.is_dir())[:4]
  for folder in ("clean", "adversarial"):
    for name in classes:
      (tmp_path / folder / name).mkdir(parents=True)
      for image in sorted((SAMPLE / name).iterdir())[:3]:
        shutil.copy(image, tmp_path / folder / name / image.name)
  out = tmp_path / "samples.png"
  run = subprocess.run(
      [sys.executable, "-m", "experiments.cifar10.demo_samples",
       f"--clean_dir={tmp_path / 'clean'}", f"--adversarial_dir={tmp_path / 'adversarial'}",
       f"--classifier={REPO_ROOT / 'weights' / 'cifar10' / 'resnet_v2.keras'}",
       "--purifier=cifar10", "--num_samples=4", f"--output={out}"],
      capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
  assert run.returncode == 0, run.stderr[-3000:]
  assert out.is_file()
  assert "4 images of 4 classes" in run.stdout, run.stdout
