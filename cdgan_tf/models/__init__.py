"""Keras 3 generators and discriminators of CD-GAN."""
