"""Writing the defended and purifier SavedModels (atomically).

`export_purifier` writes a purifier SavedModel (a `serve_images` function: images
float32 [N, H, W, 3] in [0, 1] -> {"purified": [N, S, S, 3]}, plus its working size and
scale as variables); `defenses.exported.ExportedPurifier` reads one back behind the
`Purifier` interface (`evaluate.py --purifier=DIR`, the defense registry,
`cdgan_tf.load_purifier`). `load` and `ExportedPurifier` are that module's, named here
too for the writer's callers.

Loading a SavedModel runs its graph: load only SavedModels from sources you trust.
"""

from __future__ import annotations

import os
import shutil

import tensorflow as tf

from cdgan_tf.common import errors
from cdgan_tf.common import files
from cdgan_tf.data import image_files
from cdgan_tf.defenses.exported import ExportedPurifier  # noqa: F401 (re-exported)
from cdgan_tf.defenses.exported import load  # noqa: F401 (re-exported)
from cdgan_tf.serving.modules import DefendedModule
from cdgan_tf.serving.modules import PurifierModule


def save_module(module: tf.Module, export_dir: str, overwrite: bool = False) -> str:
  """Saves a PurifierModule or DefendedModule with both signatures, atomically.

  The SavedModel is written to a temporary sibling folder and moved into place, so an
  interrupted export never leaves a folder that looks complete.

  Args:
    module: The module to save.
    export_dir: Destination folder.
    overwrite: Replace an existing export_dir.

  Returns:
    export_dir.

  Raises:
    FileExistsError: a non-empty export_dir without `overwrite`.
    files.WriteError: the parent folder cannot be written, or the disk filled up while
      saving (the temporary folder is removed; an existing export_dir is kept).
  """
  export_dir = os.path.abspath(export_dir)
  if os.path.exists(export_dir) and os.listdir(export_dir) and not overwrite:
    raise FileExistsError(f"{export_dir} exists and is not empty (pass overwrite=True / "
                          "--overwrite to replace it)")
  files.check_writable(os.path.dirname(export_dir), "the parent folder")
  tmp = f"{export_dir}.tmp-{os.getpid()}"
  if os.path.exists(tmp):
    shutil.rmtree(tmp)
  signatures = {"serving_default": module.serve_images.get_concrete_function(),
                "serving_bytes": module.serve_bytes.get_concrete_function()}
  try:
    tf.saved_model.save(module, tmp, signatures=signatures)
  except (OSError, tf.errors.OpError) as e:
    shutil.rmtree(tmp, ignore_errors=True)
    reason = getattr(e, "strerror", None) or " ".join(str(getattr(e, "message", e)).split())
    kept = f"{export_dir} kept as it was" if os.path.exists(export_dir) else "nothing kept"
    raise files.WriteError(f"cannot write the SavedModel to {tmp} ({reason[:200]}); "
                           f"{kept}") from None
  if os.path.exists(export_dir):
    shutil.rmtree(export_dir)
  os.replace(tmp, export_dir)
  return export_dir


def export_defended(classifier, purifier, export_dir: str, overwrite: bool = False,
                    max_pixels: int = image_files.MAX_PIXELS) -> str:
  """Exports purifier + classifier (purifier None: the classifier alone); the bytes
  signature refuses images over `max_pixels` decoded pixels."""
  return save_module(DefendedModule(classifier, purifier, max_pixels), export_dir,
                     overwrite)


def export_purifier(purifier, export_dir: str, overwrite: bool = False,
                    max_pixels: int = image_files.MAX_PIXELS) -> str:
  """Exports the purifier alone (see `export_defended` for `max_pixels`)."""
  return save_module(PurifierModule(purifier, max_pixels), export_dir, overwrite)
