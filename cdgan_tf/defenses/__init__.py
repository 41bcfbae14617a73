"""Purifiers: the declared interface, the CD-GAN chain and its ablations, the baselines,
and the registry that builds them by name (`defenses.registry`, imported on its own),
and an exported purifier SavedModel read back (`defenses.exported`)."""

from cdgan_tf.defenses.base import DefendedClassifier  # noqa: F401
from cdgan_tf.defenses.base import Purifier  # noqa: F401
from cdgan_tf.defenses.cdgan import CdganPurifier  # noqa: F401
