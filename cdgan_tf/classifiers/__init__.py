"""Classifiers behind one [0, 1] image interface: TF-Hub, SavedModel, Keras and TFLite
loaders and the registry of the paper's named models."""

from cdgan_tf.classifiers.base import Classifier  # noqa: F401
from cdgan_tf.classifiers.base import ClassifierError  # noqa: F401
from cdgan_tf.classifiers.base import IMAGENET_EVAL_CROP_FRACTION  # noqa: F401
from cdgan_tf.classifiers.registry import load_classifier  # noqa: F401
from cdgan_tf.classifiers.registry import REGISTRY  # noqa: F401
