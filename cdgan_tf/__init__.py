"""cdgan_tf: CD-GAN (Chained Dual-GAN) adversarial purification in TensorFlow 2 / Keras 3.

The Python use in three lines:

  import cdgan_tf
  purifier = cdgan_tf.load_purifier("imagenet-128")   # or "imagenet-64", "cifar10", a path
  purified = purifier(images)      # float32 [N, H, W, 3] in [0, 1] -> [N, 256, 256, 3]

`cdgan_tf.presets()` lists the shipped purifiers (each with a model card);
`cdgan_tf.PurifierLayer` puts one in front of any Keras classifier (a saved model that
contains it loads with `keras.models.load_model` after `import cdgan_tf`);
`cdgan_tf.integrations.art` adapts one to the Adversarial Robustness Toolbox.
"""

import importlib as _importlib

__version__ = "0.1.0"

# The public API, imported on first use (PEP 562): `import cdgan_tf` alone imports
# no TensorFlow, so an entry script can `from cdgan_tf import cli` and quiet
# TensorFlow's logs before TensorFlow loads (`cli.start`).
_API = {
    "Purifier": "cdgan_tf.defenses.base",
    "PurifierLayer": "cdgan_tf.integrations.keras_layer",
    "load_purifier": "cdgan_tf.pretrained",
    "presets": "cdgan_tf.pretrained",
}
__all__ = sorted(_API)


# Registers PurifierLayer with Keras once Keras loads (now, if it is loaded already);
# imports neither Keras nor TensorFlow itself.
from cdgan_tf.integrations import registration as _registration  # noqa: E402

_registration.install()


def __getattr__(name):
  if name in _API:
    value = getattr(_importlib.import_module(_API[name]), name)
    globals()[name] = value  # Later look-ups skip this function.
    return value
  raise AttributeError(f"module 'cdgan_tf' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_API))
