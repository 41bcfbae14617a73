"""A purifier exported as a SavedModel (`export_defended.py` without --classifier),
used as a purifier again (`evaluate.py --purifier=DIR`).

The SavedModel is the one `cdgan_tf.serving` writes: a `serve_images` function (images
float32 [N, H, W, 3] in [0, 1] -> {"purified": [N, S, S, 3]}) and its working size and
scale as variables. Loading a SavedModel runs its graph: load only SavedModels from
sources you trust.
"""

from __future__ import annotations

import os

import tensorflow as tf

from cdgan_tf.common import errors
from cdgan_tf.defenses import base


class ExportedPurifier(base.Purifier):
  """An exported purifier SavedModel behind the `Purifier` interface.

  Args:
    export_dir: The SavedModel folder.
    name: Registry name (the exported chain is "cdgan").

  Raises:
    FileNotFoundError: no SavedModel there.
    ValueError: a SavedModel that is not an exported purifier.
  """

  differentiable = True

  def __init__(self, export_dir: str, name: str = "cdgan"):
    if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
      raise FileNotFoundError(f"no SavedModel at {export_dir} (--purifier)")
    self._loaded = tf.saved_model.load(export_dir)
    for attribute in ("serve_images", "image_size", "scale"):
      if not hasattr(self._loaded, attribute):
        raise errors.UsageError(f"{export_dir} is not an exported purifier (no {attribute}); "
                         "export one with export_defended.py without --classifier")
    self.name = name
    self.image_size = int(self._loaded.image_size.numpy())
    self.scale = int(self._loaded.scale.numpy())

  def __call__(self, images: tf.Tensor) -> tf.Tensor:
    images = base.check_images(images, self.name)
    return self._loaded.serve_images(images)["purified"]
