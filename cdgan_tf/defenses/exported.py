"""An exported purifier SavedModel read back as a `Purifier`.

`serving.saving.export_purifier` writes the SavedModel (`serving.modules.PurifierModule`:
a `serve_images` function, images float32 [N, H, W, 3] in [0, 1] ->
{"purified": [N, S, S, 3]}, plus its working size and scale as variables); this module
reads it, so the defense registry and `cdgan_tf.load_purifier` reach an exported
purifier without importing the serving package (defenses sit below serving).

Loading a SavedModel runs its graph: load only SavedModels from sources you trust.
"""

from __future__ import annotations

import os

import tensorflow as tf

from cdgan_tf.common import errors
from cdgan_tf.defenses import base

# What `serving.modules.PurifierModule` saves and this reader needs.
PURIFIER_ATTRIBUTES = ("serve_images", "image_size", "scale")


def load(export_dir: str, flag: str = ""):
  """Loads a SavedModel folder (tf.saved_model.load), with a clear error if missing.

  Args:
    export_dir: The SavedModel folder.
    flag: The flag that named it, for the error message ("" for none).

  Raises:
    FileNotFoundError: no saved_model.pb in `export_dir`.
  """
  if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
    raise FileNotFoundError(f"no SavedModel at {export_dir}" + (f" ({flag})" if flag else ""))
  return tf.saved_model.load(export_dir)


class ExportedPurifier(base.Purifier):
  """A purifier SavedModel written by `serving.saving.export_purifier`, as a `Purifier`.

  Args:
    export_dir: The SavedModel folder.
    name: Registry name (the exported chain is "cdgan").

  Raises:
    FileNotFoundError: no SavedModel there.
    errors.UsageError: a SavedModel that is not an exported purifier.
  """

  differentiable = True

  def __init__(self, export_dir: str, name: str = "cdgan"):
    self._loaded = load(export_dir, "--purifier")
    for attribute in PURIFIER_ATTRIBUTES:
      if not hasattr(self._loaded, attribute):
        raise errors.UsageError(
            f"{export_dir} is not an exported purifier (no {attribute}); export one with "
            "export_defended.py without --classifier")
    self.name = name
    self.image_size = int(self._loaded.image_size.numpy())
    self.scale = int(self._loaded.scale.numpy())

  def __call__(self, images: tf.Tensor) -> tf.Tensor:
    images = base.check_images(images, self.name)
    return self._loaded.serve_images(images)["purified"]
