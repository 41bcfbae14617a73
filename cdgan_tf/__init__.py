"""cdgan_tf: CD-GAN (Chained Dual-GAN) adversarial purification in TensorFlow 2 / Keras 3.

The Python use in three lines:

  import cdgan_tf
  purifier = cdgan_tf.load_purifier("imagenet-128")   # or "imagenet-64", "cifar10", a path
  purified = purifier(images)      # float32 [N, H, W, 3] in [0, 1] -> [N, 256, 256, 3]

`cdgan_tf.presets()` lists the shipped purifiers (each with a model card);
`cdgan_tf.PurifierLayer` puts one in front of any Keras classifier (importing cdgan_tf
registers it, so `keras.models.load_model` reads models that contain it);
`cdgan_tf.integrations.art` adapts one to the Adversarial Robustness Toolbox.
"""

import sys as _sys

__version__ = "0.1.0"


def _program_starts_with_cli() -> bool:
  """Whether the running program begins with `from cdgan_tf import cli`.

  The project's entry scripts import `cdgan_tf.cli` first, before anything imports
  TensorFlow, so that it can keep TensorFlow's logs quiet; that import runs this file
  first, and the API below imports TensorFlow. For such a program cli is imported here,
  ahead of the API: the same order the program asked for.
  """
  if "tensorflow" in _sys.modules:
    return False
  main = getattr(_sys.modules.get("__main__"), "__file__", None)
  try:
    with open(main, encoding="utf-8") as source:
      return "from cdgan_tf import cli" in source.read(20000)
  except (OSError, TypeError, UnicodeDecodeError):
    return False


# pylint: disable=wrong-import-position
if _program_starts_with_cli():
  from cdgan_tf import cli  # noqa: E402,F401

from cdgan_tf.defenses.base import Purifier  # noqa: E402,F401
from cdgan_tf.integrations.keras_layer import PurifierLayer  # noqa: E402,F401
from cdgan_tf.pretrained import load_purifier  # noqa: E402,F401
from cdgan_tf.pretrained import presets  # noqa: E402,F401
