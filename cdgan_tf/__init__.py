"""cdgan_tf: CD-GAN (Chained Dual-GAN) adversarial purification in TensorFlow 2 / Keras 3.

The Python use in three lines:

  import cdgan_tf
  purifier = cdgan_tf.load_purifier("imagenet-128")   # or "imagenet-64", "cifar10", a path
  purified = purifier(images)      # float32 [N, H, W, 3] in [0, 1] -> [N, 256, 256, 3]

`cdgan_tf.presets()` lists the shipped purifiers (each with a model card);
`cdgan_tf.PurifierLayer` puts one in front of any Keras classifier;
`cdgan_tf.integrations.art` adapts one to the Adversarial Robustness Toolbox.
"""

__version__ = "0.1.0"

# pylint: disable=wrong-import-position
from cdgan_tf.defenses.base import Purifier  # noqa: E402,F401
from cdgan_tf.integrations.keras_layer import PurifierLayer  # noqa: E402,F401
from cdgan_tf.pretrained import load_purifier  # noqa: E402,F401
from cdgan_tf.pretrained import presets  # noqa: E402,F401
