"""benchmarks/accelerator_check.py --tiny: trains, evaluates and exports the chain on CPU.

No GPU in the sessions that wrote it: this runs the --tiny settings only (float CPU,
MirroredStrategy over the one CPU device, mixed_bfloat16, no XLA).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cdgan_tf import image_ops
from cdgan_tf.data import synthetic
from cdgan_tf.defenses import cdgan as cdgan_lib
from cdgan_tf.serving import saving
from tests.conftest import REPO_ROOT



def test_synthetic_pairs_are_clean_plus_a_sign_pattern():
  adversarial, clean = synthetic.sign_pairs(16, 3, seed=0)
  assert adversarial.shape == clean.shape == (3, 16, 16, 3)
  diff = np.abs(adversarial.astype(int) - clean.astype(int))
  # +-8/255 everywhere except where the clip at 0 or 255 cut it.
  assert diff.max() == 8 and (diff == 8).mean() > 0.9


@pytest.mark.slow
def test_tiny_run_writes_the_figures_and_a_chain_that_serves(tmp_path):
  out = tmp_path / "check.json"
  command = [sys.executable, "benchmarks/accelerator_check.py", "--tiny",
             f"--work_dir={tmp_path / 'work'}", f"--output_json={out}"]
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
         "PYTHONPATH": str(REPO_ROOT)}
  done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                        timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads(out.read_text())["results"]
  assert results["strategy"] == "MirroredStrategy" and results["replicas"] == 1
  assert results["policy"] == "mixed_bfloat16" and results["jit"] is False
  assert any(d["type"] == "CPU" for d in results["devices"])
  sub, sup = results["gans"]
  assert (sub["role"], sup["role"]) == ("sub", "super")
  for row in (sub, sup):
    # 6 steps, 2 content-only, loops of 2: each phase's first call is not timed.
    assert row["steps"] == 6 and row["timed_steps"] == 2
    assert len(row["first_call_seconds"]) == 2
    assert row["images_per_sec"] == pytest.approx(2 * 4 / row["timed_seconds"])
    assert row["gflops_per_sec"] == pytest.approx(
        row["gflop_per_step"] / 4 * row["images_per_sec"])
    assert row["gflop_per_step"] > 0 and set(row["val_metrics"]) >= {"psnr", "ssim"}
  # The super generator works at 16 px, the sub at 8 px (inputs 16 px): super costs more.
  assert sup["gflop_per_step"] > sub["gflop_per_step"]
  chain = results["chain"]
  assert chain["reload_ok"] and chain["reload_max_abs_diff"] <= 1e-5
  # The attacked input's PSNR: a +-8/255 sign pattern is 20 log10(255 / 8) = 30.07 dB
  # (a little higher where the clip at 0 / 1 shortened it).
  assert 30.07 <= chain["input_psnr_db"] < 30.5
  # The exported chain reloads here and serves what the two exported generators compute.
  purifier = cdgan_lib.CdganPurifier.from_files(sub["export_path"], sup["export_path"])
  adversarial, clean = synthetic.sign_pairs(16, 4, seed=2)
  images = tf.constant(adversarial, tf.float32) / 255.0
  served = saving.load(chain["export_dir"]).signatures["serving_default"](
      images=images)["purified"]
  np.testing.assert_allclose(served.numpy(), purifier(images).numpy(), atol=1e-5)
  psnr = float(tf.reduce_mean(image_ops.psnr(served, tf.constant(clean, tf.float32) / 255)))
  assert psnr == pytest.approx(chain["chain_psnr_db"], abs=1e-3)
