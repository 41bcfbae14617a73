"""The distributed GAN trainer."""
