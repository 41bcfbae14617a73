"""experiments/generalization/ship.py: a run copied into weights/ through generator_files."""

import os
import subprocess
import sys

import numpy as np

from cdgan_tf.models import generator_files
from cdgan_tf.models import generators

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_ship_copies_both_generators_and_points_super_at_the_shipped_sub(tmp_path):
  run, dest = tmp_path / "run", tmp_path / "weights" / "mix"
  models = {"sub": generators.build_sub_generator(2, 1, 4), "super":
            generators.build_super_generator(2, 1, 4)}
  for role, model in models.items():
    info = generator_files.GeneratorInfo(role, 2, 8, 1, 4, False, step=7,
                                         sub_model=str(run / "sub") if role == "super" else "")
    generator_files.save_generator(model, info, str(run / role / "export"))
  env = dict(os.environ, PYTHONPATH=ROOT)
  subprocess.run([sys.executable, "experiments/generalization/ship.py", f"--run={run}",
                  f"--dest={dest}"], check=True, cwd=ROOT, env=env)
  x = np.random.default_rng(0).uniform(size=(1, 8, 8, 3)).astype(np.float32)
  for role, small in (("sub", x), ("super", x[:, :4, :4])):
    model, info = generator_files.load_generator(str(dest / role))
    assert info.step == 7 and info.role.value == role
    np.testing.assert_allclose(model(small).numpy(), models[role](small).numpy(), atol=1e-6)
  assert generator_files.read_info(str(dest / "super")).sub_model == str(dest / "sub")
  assert generator_files.read_info(str(dest / "sub")).sub_model == ""
