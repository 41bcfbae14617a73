"""Generators, discriminator and their layers; importing registers the custom layers."""

from cdgan_tf.models import layers  # noqa: F401  (registers the custom Keras layers)
