"""Small CIFAR-10 classifiers in the CD-GAN paper's families, built from Keras layers only.

The CD-GAN paper evaluates ImageNet classifiers of three families (ResNet-v2,
MobileNet-v2, Inception-v3) and attacks them with DAmageNet, whose perturbations were
crafted on a VGG19. The scaled-down CIFAR-10 experiment mirrors that with one small
network per family (the targets) and a VGG-style plain conv stack (the surrogate that
makes the transfer-attack set, of a different family than every target).

Every model:
  * takes float32 [N, 32, 32, 3] RGB in [0, 1] (normalised inside by a built-in
    `keras.layers.Normalization` with the CIFAR-10 channel mean / variance), and
  * returns float32 logits [N, 10] (no softmax), label = index of the class folder in
    sorted order (airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck).

The architectures use only built-in layers, so a saved `.keras` file loads with plain
`keras.models.load_model(path)` anywhere, without importing this module. For training
speed on CPU, `training_clone` swaps every BatchNormalization for
`FusedBatchNormalization` (one fused TF kernel; about 2.5x faster than Keras 3's
moments + normalize on one core) and optionally computes in bfloat16; `copy_weights`
moves the trained weights back into the built-in float32 architecture before saving.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple

import keras
from keras import layers
import tensorflow as tf

from cdgan_tf.common import errors

IMAGE_SIZE = 32
NUM_CLASSES = 10
# Per-channel statistics of the CIFAR-10 training images in [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

_WEIGHT_INIT = "he_normal"


def _inputs_normalised(name: str) -> Tuple[keras.KerasTensor, keras.KerasTensor]:
  """Model input [N, 32, 32, 3] in [0, 1] and its per-channel standardised version."""
  inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="float32", name="image")
  x = layers.Normalization(mean=list(CIFAR10_MEAN),
                           variance=[s * s for s in CIFAR10_STD],
                           name=f"{name}_normalize")(inputs)
  return inputs, x


def _conv(x, filters: int, kernel: int = 3, strides: int = 1, name: str = ""):
  return layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                       kernel_initializer=_WEIGHT_INIT, name=name)(x)


def _bn(x, name: str):
  return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)


def _conv_bn_relu(x, filters: int, kernel: int = 3, strides: int = 1, name: str = ""):
  x = _conv(x, filters, kernel, strides, name=f"{name}_conv")
  x = _bn(x, f"{name}_bn")
  return layers.ReLU(name=f"{name}_relu")(x)


def _head(x, name: str, dropout: float = 0.0):
  x = layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
  if dropout:
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
  return layers.Dense(NUM_CLASSES, name=f"{name}_logits")(x)


# ----------------------------------------------------------------------------------------
# ResNet-v2 (pre-activation; He et al., "Identity Mappings in Deep Residual Networks").


def resnet_v2(depth: int = 20, width: int = 16, name: str = "resnet_v2") -> keras.Model:
  """Pre-activation ResNet-v2 for 32x32 (CIFAR layout: 3 stages, basic blocks).

  depth = 6 n + 2 (ResNet-20: n = 3). Stage widths are width, 2 width, 4 width at
  32x32, 16x16, 8x8. Block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus identity, or a 1x1
  projection of the pre-activated input where the shape changes.

  Args:
    depth: Number of weighted layers, 6 n + 2.
    width: Filters of the first stage.
    name: Model name (also the layer-name prefix).

  Returns:
    Model [N, 32, 32, 3] in [0, 1] -> logits [N, 10].
  """
  if depth < 8 or (depth - 2) % 6:
    raise errors.UsageError(f"resnet_v2 depth={depth} must be 6 n + 2 (8, 14, 20, 26, ...)")
  blocks_per_stage = (depth - 2) // 6
  inputs, x = _inputs_normalised(name)
  x = _conv(x, width, name=f"{name}_stem_conv")
  for stage in range(3):
    filters = width * 2**stage
    for block in range(blocks_per_stage):
      prefix = f"{name}_s{stage + 1}b{block + 1}"
      strides = 2 if stage > 0 and block == 0 else 1
      preact = _bn(x, f"{prefix}_preact_bn")
      preact = layers.ReLU(name=f"{prefix}_preact_relu")(preact)
      if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv(preact, filters, 1, strides, name=f"{prefix}_proj")
      else:
        shortcut = x
      y = _conv(preact, filters, 3, strides, name=f"{prefix}_conv1")
      y = _bn(y, f"{prefix}_bn1")
      y = layers.ReLU(name=f"{prefix}_relu1")(y)
      y = _conv(y, filters, 3, 1, name=f"{prefix}_conv2")
      x = layers.Add(name=f"{prefix}_add")([shortcut, y])
  x = _bn(x, f"{name}_post_bn")
  x = layers.ReLU(name=f"{name}_post_relu")(x)
  return keras.Model(inputs, _head(x, name), name=name)


# ----------------------------------------------------------------------------------------
# MobileNet-v2 (Sandler et al., inverted residuals with linear bottlenecks).

# (expansion t, output channels c, repeats n, first stride s) at width 1.0. The ImageNet
# table (Sandler et al., Table 2) has five stride-2 steps (224 -> 7): the stem and the
# first blocks of c = 24, 32, 64, 160. For 32x32 the c = 24 and c = 64 steps are removed
# (three steps: 32 -> 16 stem, -> 8, -> 4) and the repeats trimmed (17 -> 12 blocks) to
# fit a CPU budget.
MOBILENET_V2_CIFAR_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 2, 2),
    (6, 64, 3, 1),
    (6, 96, 2, 1),
    (6, 160, 2, 2),
    (6, 320, 1, 1),
)


def _make_divisible(value: float, divisor: int = 8) -> int:
  new = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return new + divisor if new < 0.9 * value else new


def mobilenet_v2(alpha: float = 0.5,
                 blocks: Sequence[Tuple[int, int, int, int]] = MOBILENET_V2_CIFAR_BLOCKS,
                 last_channels: int = 640,
                 stem_strides: int = 2,
                 name: str = "mobilenet_v2") -> keras.Model:
  """MobileNet-v2 adapted to 32x32 (three stride-2 steps in all: 32 -> 16 -> 8 -> 4).

  Block: 1x1 expand-BN-ReLU6, 3x3 depthwise (stride s)-BN-ReLU6, 1x1 project-BN
  (linear), plus identity when stride 1 and channels match.

  Args:
    alpha: Width multiplier on every block's channels.
    blocks: (t, c, n, s) rows as in the paper's Table 2.
    last_channels: Channels of the final 1x1 conv (1280 in the ImageNet model).
    stem_strides: Stride of the 3x3 stem conv.
    name: Model name (also the layer-name prefix).

  Returns:
    Model [N, 32, 32, 3] in [0, 1] -> logits [N, 10].
  """
  inputs, x = _inputs_normalised(name)
  x = _conv(x, _make_divisible(32 * alpha), strides=stem_strides, name=f"{name}_stem_conv")
  x = _bn(x, f"{name}_stem_bn")
  x = layers.ReLU(6.0, name=f"{name}_stem_relu")(x)
  index = 0
  for t, c, n, s in blocks:
    out_channels = _make_divisible(c * alpha)
    for i in range(n):
      index += 1
      prefix = f"{name}_block{index}"
      strides = s if i == 0 else 1
      in_channels = x.shape[-1]
      y = x
      if t != 1:
        y = _conv(y, in_channels * t, 1, name=f"{prefix}_expand")
        y = _bn(y, f"{prefix}_expand_bn")
        y = layers.ReLU(6.0, name=f"{prefix}_expand_relu")(y)
      y = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                                 depthwise_initializer=_WEIGHT_INIT,
                                 name=f"{prefix}_depthwise")(y)
      y = _bn(y, f"{prefix}_depthwise_bn")
      y = layers.ReLU(6.0, name=f"{prefix}_depthwise_relu")(y)
      y = _conv(y, out_channels, 1, name=f"{prefix}_project")
      y = _bn(y, f"{prefix}_project_bn")
      if strides == 1 and in_channels == out_channels:
        y = layers.Add(name=f"{prefix}_add")([x, y])
      x = y
  x = _conv_bn_relu(x, last_channels, 1, name=f"{name}_last")
  return keras.Model(inputs, _head(x, name, dropout=0.1), name=name)


# ----------------------------------------------------------------------------------------
# Inception (Szegedy et al.; Inception-v3's factorised 5x5 = two 3x3 and grid reduction).


def _inception_block(x, b1: int, b3: Tuple[int, int], b5: Tuple[int, int], pool: int,
                     name: str):
  """Four parallel branches concatenated: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | pool3x3-1x1."""
  branch1 = _conv_bn_relu(x, b1, 1, name=f"{name}_b1x1")
  branch3 = _conv_bn_relu(x, b3[0], 1, name=f"{name}_b3x3_reduce")
  branch3 = _conv_bn_relu(branch3, b3[1], 3, name=f"{name}_b3x3")
  branch5 = _conv_bn_relu(x, b5[0], 1, name=f"{name}_b5x5_reduce")
  branch5 = _conv_bn_relu(branch5, b5[1], 3, name=f"{name}_b5x5_a")
  branch5 = _conv_bn_relu(branch5, b5[1], 3, name=f"{name}_b5x5_b")
  branch_pool = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
  branch_pool = _conv_bn_relu(branch_pool, pool, 1, name=f"{name}_pool_proj")
  return layers.Concatenate(name=f"{name}_concat")([branch1, branch3, branch5, branch_pool])


def _reduction_block(x, filters: int, name: str):
  """Grid reduction (stride 2): conv3x3/2 | maxpool3x3/2, concatenated."""
  conv = _conv_bn_relu(x, filters, 3, strides=2, name=f"{name}_conv")
  pool = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)
  return layers.Concatenate(name=f"{name}_concat")([conv, pool])


def inception(width: int = 16, blocks_per_stage: Sequence[int] = (0, 2, 2),
              name: str = "inception") -> keras.Model:
  """Small Inception network for 32x32: stem, 3 stages of inception blocks.

  Stem: two conv3x3-BN-ReLU (2 w filters) at 32x32. Stages at 32x32, 16x16, 8x8 are
  separated by grid-reduction blocks (conv3x3/2 | maxpool/2); each inception block has
  parallel 1x1, 1x1-3x3, 1x1-3x3-3x3 (factorised 5x5) and maxpool3x3-1x1 branches. By
  default stage 1 has no inception block (like Inception-v3, whose stem reduces the
  image before the first inception block); all widths are multiples of 16, which the
  CPU's bfloat16 kernels need to be fast.

  Args:
    width: Base branch width w; stage k (0-based) multiplies it by 2**k.
    blocks_per_stage: Inception blocks in each of the three stages.
    name: Model name (also the layer-name prefix).

  Returns:
    Model [N, 32, 32, 3] in [0, 1] -> logits [N, 10].
  """
  if len(blocks_per_stage) != 3:
    raise errors.UsageError(f"inception blocks_per_stage={blocks_per_stage} needs 3 entries")
  w = width
  inputs, x = _inputs_normalised(name)
  x = _conv_bn_relu(x, 2 * w, 3, name=f"{name}_stem1")
  x = _conv_bn_relu(x, 2 * w, 3, name=f"{name}_stem2")
  for stage, count in enumerate(blocks_per_stage):
    m = 2**stage
    if stage:
      x = _reduction_block(x, 2 * w * m, name=f"{name}_reduce{stage}")
    for block in range(count):
      x = _inception_block(x, b1=w * m, b3=(w * m, 2 * w * m), b5=(w * m, w * m),
                           pool=w * m, name=f"{name}_s{stage + 1}b{block + 1}")
  return keras.Model(inputs, _head(x, name, dropout=0.1), name=name)


# ----------------------------------------------------------------------------------------
# VGG-style surrogate (plain conv stack; DAmageNet attacked a VGG19).


def vgg_surrogate(widths: Sequence[int] = (48, 96, 192), convs_per_stage: int = 2,
                  name: str = "vgg_surrogate") -> keras.Model:
  """Plain VGG-style stack: (conv3x3-BN-ReLU) x k then maxpool 2x2, per stage.

  Args:
    widths: Filters of each stage (one 2x downsampling after each).
    convs_per_stage: 3x3 convs per stage.
    name: Model name (also the layer-name prefix).

  Returns:
    Model [N, 32, 32, 3] in [0, 1] -> logits [N, 10].
  """
  inputs, x = _inputs_normalised(name)
  for stage, filters in enumerate(widths):
    for i in range(convs_per_stage):
      x = _conv_bn_relu(x, filters, 3, name=f"{name}_s{stage + 1}c{i + 1}")
    x = layers.MaxPooling2D(2, name=f"{name}_s{stage + 1}_pool")(x)
  return keras.Model(inputs, _head(x, name, dropout=0.1), name=name)


# ----------------------------------------------------------------------------------------
# DenseNet-BC (Huang et al., "Densely Connected Convolutional Networks"): the feature
# network of CD-GAN's classification-aware loss, a family shared with no target and not
# with the surrogate.


def _dense_layer(x, growth: int, name: str):
  y = layers.ReLU(name=f"{name}_relu1")(_bn(x, f"{name}_bn1"))
  y = _conv(y, 4 * growth, 1, name=f"{name}_conv1")
  y = layers.ReLU(name=f"{name}_relu2")(_bn(y, f"{name}_bn2"))
  y = _conv(y, growth, 3, name=f"{name}_conv2")
  return layers.Concatenate(name=f"{name}_concat")([x, y])


def densenet_feature(growth: int = 16, layers_per_block: Sequence[int] = (4, 4, 4),
                     stem: int = 32, name: str = "densenet_feature") -> keras.Model:
  """Small DenseNet-BC: stem conv, dense blocks with 1x1/3x3 bottleneck layers and
  compressing (0.5) transitions with 2x2 average pooling between them.

  Args:
    growth: Channels each dense layer adds.
    layers_per_block: Dense layers in each block (32, 16 and 8 px).
    stem: Filters of the first conv.
    name: Model name (also the layer-name prefix).

  Returns:
    Model [N, 32, 32, 3] in [0, 1] -> logits [N, 10]; its penultimate layer
    `<name>_pool` (global average pool) gives the features of the feature loss.
  """
  inputs, x = _inputs_normalised(name)
  x = _conv(x, stem, 3, name=f"{name}_stem")
  for block, count in enumerate(layers_per_block):
    for i in range(count):
      x = _dense_layer(x, growth, f"{name}_b{block + 1}l{i + 1}")
    if block < len(layers_per_block) - 1:
      x = layers.ReLU(name=f"{name}_t{block + 1}_relu")(_bn(x, f"{name}_t{block + 1}_bn"))
      x = _conv(x, int(x.shape[-1]) // 2, 1, name=f"{name}_t{block + 1}_conv")
      x = layers.AveragePooling2D(2, name=f"{name}_t{block + 1}_pool")(x)
  x = layers.ReLU(name=f"{name}_final_relu")(_bn(x, f"{name}_final_bn"))
  return keras.Model(inputs, _head(x, name), name=name)


# ----------------------------------------------------------------------------------------
# Fused batch norm for training (weights identical to keras.layers.BatchNormalization).


@keras.saving.register_keras_serializable(package="cdgan_cifar")
class FusedBatchNormalization(layers.BatchNormalization):
  """BatchNormalization over the last axis of NHWC float32/bfloat16 with TF's fused kernel.

  Same variables (gamma, beta, moving_mean, moving_variance) and inference behaviour as
  the built-in layer; in training it normalises with the batch statistics through
  `tf.compat.v1.nn.fused_batch_norm` and updates the moving statistics with the
  biased batch variance, as the built-in layer does.
  """

  def call(self, inputs, training=None, mask=None):
    if (not training or not self.trainable or mask is not None or inputs.shape.rank != 4
        or self.axis not in (-1, 3) or self.renorm or self.synchronized
        or inputs.dtype not in (tf.float32, tf.bfloat16)):
      return super().call(inputs, training=training, mask=mask)
    gamma = self.gamma if self.scale else tf.ones_like(self.moving_mean)
    beta = self.beta if self.center else tf.zeros_like(self.moving_mean)
    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        inputs, tf.convert_to_tensor(gamma), tf.convert_to_tensor(beta),
        epsilon=self.epsilon, is_training=True)
    # The fused kernel returns the Bessel-corrected variance; undo it.
    count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
    variance = variance * (count - 1.0) / count
    self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
    self.moving_variance.assign(self.moving_variance * self.momentum
                                + variance * (1.0 - self.momentum))
    return tf.cast(outputs, self.compute_dtype)


def training_clone(model: keras.Model, mixed_bfloat16: bool = False) -> keras.Model:
  """A clone of `model` (fresh weights) set up for fast CPU training.

  Every BatchNormalization becomes a FusedBatchNormalization. With mixed_bfloat16 the
  layers compute in bfloat16 (variables stay float32; convolutions run on the CPU's
  bfloat16 units, about 2x faster), except DepthwiseConv2D (TF's bfloat16 depthwise
  backprop is 10-100x slower than float32 on CPU) and the final Dense (float32 logits).

  Args:
    model: A model built by this module.
    mixed_bfloat16: Use the mixed_bfloat16 policy as described.

  Returns:
    The clone; `copy_weights(clone, build(name))` moves its weights back.
  """

  def clone(layer):
    config = layer.get_config()
    if mixed_bfloat16 and not isinstance(layer, (layers.DepthwiseConv2D, layers.Dense)):
      config["dtype"] = "mixed_bfloat16"
    cls = layer.__class__
    if cls is layers.BatchNormalization:
      cls = FusedBatchNormalization
    return cls.from_config(config)

  return keras.models.clone_model(model, clone_function=clone)


def copy_weights(source: keras.Model, target: keras.Model) -> keras.Model:
  """Copies all weights layer by layer (same architecture, e.g. fused -> built-in BN)."""
  if len(source.layers) != len(target.layers):
    raise errors.UsageError(f"cannot copy weights: {source.name} has {len(source.layers)} "
                            f"layers, {target.name} has {len(target.layers)}")
  for src, dst in zip(source.layers, target.layers):
    dst.set_weights(src.get_weights())
  return target


# name -> (builder, role). Targets are the defended classifiers; the surrogate only
# makes the transfer-attack set.
ARCHITECTURES: Dict[str, Tuple[Callable[[], keras.Model], str]] = {
    "resnet_v2": (resnet_v2, "target"),
    "mobilenet_v2": (mobilenet_v2, "target"),
    "inception": (inception, "target"),
    "vgg_surrogate": (vgg_surrogate, "surrogate"),
    "densenet_feature": (densenet_feature, "feature network"),
}


def build(name: str, **kwargs) -> keras.Model:
  """Builds architecture `name` (a key of ARCHITECTURES) with its default sizes."""
  if name not in ARCHITECTURES:
    raise errors.UsageError(f"unknown CIFAR-10 architecture {name!r}; "
                            f"choose from {', '.join(ARCHITECTURES)}")
  return ARCHITECTURES[name][0](**kwargs)
