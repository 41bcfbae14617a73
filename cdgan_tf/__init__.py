"""cdgan_tf: CD-GAN (Chained Dual-GAN) adversarial purification in TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"
