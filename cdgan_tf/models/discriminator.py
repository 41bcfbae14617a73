"""The CD-GAN discriminator (SRGAN style), one per GAN.

SRGAN (Ledig et al., 2017): conv3x3-(BN)-LeakyReLU(0.2) blocks alternating stride 1 and
stride 2, filters doubling at each stride-2 stage (64, 128, 256, 512), no BN after the
first conv. CD-GAN's paper describes the discriminator as this conv stack ending in one
fully-connected layer, so the stack is flattened into a single Dense(1) logit (SRGAN's
extra Dense(1024) is dropped).

The number of stride-2 stages adapts to the input: 4 (as in SRGAN) for inputs of 32 px
and more, fewer for tiny inputs so that the last feature map stays at least 2x2
(8 px: 2 stages -> 2x2; 16 px: 3 stages -> 2x2; 64 px: 4 stages -> 4x4; 256 px: 16x16).
"""

from __future__ import annotations

import keras

from cdgan_tf.common import errors
from cdgan_tf.models import layers

MAX_STAGES = 4
MAX_FILTER_MULTIPLIER = 8


def num_stages(image_size: int) -> int:
  """Stride-2 stages used for `image_size`: at most 4, last map >= 2x2."""
  stages, side = 0, image_size
  while stages < MAX_STAGES and (side + 1) // 2 >= 2:
    side = (side + 1) // 2
    stages += 1
  return stages


def build_discriminator(image_size: int, filters: int = 64,
                        name: str = "discriminator") -> keras.Model:
  """Builds the discriminator for square images of side `image_size`.

  Args:
    image_size: Side of the judged images (e.g. 64 for the sub GAN, 256 for the super
      GAN); at least 2.
    filters: Feature maps of the first stage; doubled per stride-2 stage up to 8x.
    name: Model name.

  Returns:
    A Keras model [N, image_size, image_size, 3] float32 in [0, 1] -> [N, 1] float32
    logits (unbounded; > 0 means "real").

  Raises:
    ValueError: image_size < 2 or filters < 1.
  """
  if not isinstance(image_size, int) or image_size < 2:
    raise errors.UsageError(f"discriminator image_size={image_size!r} must be an int >= 2")
  if filters < 1:
    raise errors.UsageError(f"discriminator filters={filters} must be positive")
  images = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="images")
  x = layers.ToGeneratorRange(name="to_generator_range")(images)
  stages = num_stages(image_size)
  for stage in range(max(stages, 1)):
    width = filters * min(2 ** stage, MAX_FILTER_MULTIPLIER)
    for stride in ((1, 2) if stage < stages else (1,)):
      prefix = f"stage{stage}_s{stride}"
      x = keras.layers.Conv2D(width, 3, strides=stride, padding="same",
                              name=f"{prefix}_conv")(x)
      if not (stage == 0 and stride == 1):  # SRGAN: no BN after the first conv.
        x = keras.layers.BatchNormalization(name=f"{prefix}_bn")(x)
      x = keras.layers.LeakyReLU(negative_slope=0.2, name=f"{prefix}_lrelu")(x)
  x = keras.layers.Flatten(name="flatten")(x)
  logits = keras.layers.Dense(1, dtype="float32", name="logit")(x)
  return keras.Model(images, logits, name=name)
