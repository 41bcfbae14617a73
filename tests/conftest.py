"""Shared pytest setup: quiet TF, two logical CPU devices, the ../shared location."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# Two logical CPU devices so MirroredStrategy tests run real multi-replica code.
# This must happen before TensorFlow initialises its devices.
_cpus = tf.config.list_physical_devices("CPU")
if _cpus and not tf.config.get_logical_device_configuration(_cpus[0]):
  try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
  except RuntimeError:  # Already initialised by an earlier import.
    pass


def shared_dir() -> pathlib.Path:
  """The ../shared data folder (CDGAN_SHARED_DIR overrides)."""
  return pathlib.Path(os.environ.get("CDGAN_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture
def shared():
  """Path of ../shared; skips the test with a reason when it is absent."""
  path = shared_dir()
  if not (path / "datasets").is_dir():
    pytest.skip(f"real data not found at {path} (set CDGAN_SHARED_DIR)")
  return path
