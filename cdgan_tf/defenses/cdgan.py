"""The chained CD-GAN purifier: any image -> resize -> sub G -> super G.

At inference the two independently trained generators are chained (paper, Fig. 1):

  image [N, H, W, 3] in [0, 1] (any H, W)
    -> resize to image_size (256)          bicubic, antialiased
    -> sub generator                       [N, 64, 64, 3]
    -> super generator                     [N, 256, 256, 3] in [0, 1]

and a classifier adapter then resizes the purified image into its own input size (the
resize before the classifier is part of the defended model, as in the paper). The
ablations `sub_only` (sub G, then bicubic up) and `super_only` (bicubic down, then
super G) replace one half of the chain by plain resizing.

Two speed options leave the interface unchanged (float32 in [0, 1] in and out):
`compute_dtype` runs the generators' arithmetic in bfloat16 or float16
(`models.inference.inference_copy`), and `jit_compile` compiles the generator part of
the chain with XLA (the resize of the input, whose size varies, stays outside).
"""

from __future__ import annotations

from typing import List, Optional

import keras
import tensorflow as tf

from cdgan_tf import config as config_lib
from cdgan_tf import image_ops
from cdgan_tf.common import checks
from cdgan_tf.common import errors
from cdgan_tf.defenses import base
from cdgan_tf.models import generator_files
from cdgan_tf.models import inference

MODES = ("chain", "sub_only", "super_only")
MODE_NAMES = {"chain": "cdgan", "sub_only": "sub_only", "super_only": "super_only"}


def _measured_scale(model: keras.Model, size: int) -> float:
  """Output/input size ratio of a fully convolutional generator, from a dummy call."""
  out = model(tf.zeros((1, size, size, 3)), training=False)
  return out.shape[1] / size


def _check_role(info: Optional[generator_files.GeneratorInfo], expected: config_lib.Role,
                path: str, flag: str) -> None:
  if info is not None and info.role is not expected:
    raise errors.UsageError(
        f"{path} holds the {info.role.value} generator, but {flag} needs the "
        f"{expected.value} one (generator.json says role={info.role.value}); were "
        "--sub_model and --super_model swapped?")


class CdganPurifier(tf.Module, base.Purifier):
  """CD-GAN's purifier (or one of its ablations); a tf.Module, so it can be exported.

  Args:
    sub_generator: Keras model, [N, S, S, 3] -> [N, S/scale, S/scale, 3], in [0, 1].
    super_generator: Keras model, [N, s, s, 3] -> [N, s*scale, s*scale, 3], in [0, 1].
    image_size: S, the side the input is resized to first (paper: 256).
    scale: The resolution ratio (paper: 4).
    mode: "chain" (the paper's), "sub_only" or "super_only".
    compute_dtype: "float32" (default), "bfloat16" or "float16": the generators'
      arithmetic (bfloat16 suits CPUs with AVX512-BF16 and TPUs, float16 GPUs). On the
      shipped CIFAR-10 generators and 100 sample images, bfloat16 changed pixels by at
      most 0.021 (mean 0.0011), float16 by at most 0.002.
    jit_compile: Compile the generators (and the resize between them) with XLA; their
      image-skip resizes become matrix products (XLA has no ScaleAndTranslate).
  """

  differentiable = True

  def __init__(self, sub_generator: Optional[keras.Model],
               super_generator: Optional[keras.Model], image_size: int, scale: int,
               mode: str = "chain", compute_dtype: str = "float32",
               jit_compile: bool = False):
    checks.check_choice("mode", mode, MODES)
    checks.check_choice("compute_dtype", compute_dtype, inference.COMPUTE_DTYPES)
    super().__init__(name=f"cdgan_{mode}")
    checks.check_geometry(image_size, scale)
    if mode in ("chain", "sub_only") and sub_generator is None:
      raise errors.UsageError(f"mode {mode} needs the sub generator")
    if mode in ("chain", "super_only") and super_generator is None:
      raise errors.UsageError(f"mode {mode} needs the super generator")
    # The trained (float32) generators, kept for `with_mode` and export.
    self.trained_generators = (sub_generator, super_generator)
    copy = lambda g: None if g is None else inference.inference_copy(  # noqa: E731
        g, compute_dtype, matrix_resizes=jit_compile)
    self.sub_generator = copy(sub_generator)
    self.super_generator = copy(super_generator)
    self.image_size = int(image_size)
    self.scale = int(scale)
    self.mode = mode
    self.compute_dtype = compute_dtype
    self.jit_compile = bool(jit_compile)
    self._generate = (tf.function(self._generate_eager, jit_compile=True) if jit_compile
                      else self._generate_eager)
    # tf.Module reserves `name` (read-only); the registry name lives here.
    self._registry_name = MODE_NAMES[mode]

  @property
  def name(self) -> str:  # pylint: disable=invalid-overridden-method
    return getattr(self, "_registry_name", None) or super().name

  @classmethod
  def from_files(cls, sub_path: str = "", super_path: str = "", mode: str = "chain",
                 image_size: Optional[int] = None, compute_dtype: str = "float32",
                 jit_compile: bool = False) -> "CdganPurifier":
    """Loads the trainer's exported generators and reads their sizes.

    Args:
      sub_path: The sub generator's .keras file, export folder or training model_dir.
      super_path: The super generator's.
      mode: "chain", "sub_only" or "super_only".
      image_size: Overrides the size recorded next to the generators.
      compute_dtype: See the class.
      jit_compile: See the class.

    Raises:
      GeneratorFileError: a path holds no generator.
      ValueError: the generators are swapped or do not fit together.
    """
    sub, sub_info = generator_files.load_generator(sub_path) if sub_path else (None, None)
    sup, sup_info = (generator_files.load_generator(super_path) if super_path
                     else (None, None))
    _check_role(sub_info, config_lib.Role.SUB, sub_path, "--sub_model")
    _check_role(sup_info, config_lib.Role.SUPER, super_path, "--super_model")
    if sub_info is not None and sup_info is not None:
      differ = [f"{name}: sub {getattr(sub_info, name)}, super {getattr(sup_info, name)}"
                for name in ("image_size", "scale")
                if getattr(sub_info, name) != getattr(sup_info, name)]
      if differ:
        raise errors.UsageError(f"generators do not match: {'; '.join(differ)} ({sub_path}, "
                                f"{super_path}); chain a pair trained at one geometry")
    info = sub_info or sup_info
    size = image_size or (info.image_size if info else None) or (
        config_lib.DataConfig().image_size)
    scale = info.scale if info else None
    if scale is None:  # No metadata: measure it from the generators themselves.
      scale = (round(1 / _measured_scale(sub, size)) if sub is not None
               else round(_measured_scale(sup, size // config_lib.DataConfig().scale)))
    if sub is not None and sup is not None:
      super_scale = round(_measured_scale(sup, size // scale))
      if super_scale != scale:
        raise errors.UsageError(f"generators do not match: sub scales by 1/{scale}, super by "
                                f"{super_scale} ({sub_path}, {super_path})")
    return cls(sub, sup, image_size=size, scale=scale, mode=mode,
               compute_dtype=compute_dtype, jit_compile=jit_compile)

  def with_mode(self, mode: str) -> "CdganPurifier":
    """The same generators and options in another mode (an ablation)."""
    return CdganPurifier(*self.trained_generators, self.image_size, self.scale,
                         mode=mode, compute_dtype=self.compute_dtype,
                         jit_compile=self.jit_compile)

  @property
  def small_size(self) -> int:
    return self.image_size // self.scale

  def run_stages(self, images: tf.Tensor):
    """Runs the purifier and returns every stage.

    Args:
      images: float32 [N, H, W, 3] in [0, 1], any H and W.

    Returns:
      (resized [N,S,S,3], intermediate [N,S/scale,S/scale,3], purified [N,S,S,3]),
      all in [0, 1].
    """
    images = base.check_images(images, self.name)
    if images.shape[-1] != 3:
      raise errors.UsageError(f"the purifier takes [N, H, W, 3] images, got shape {images.shape}")
    resized = image_ops.resize(images, self.image_size)
    small, purified = self._generate(resized)
    return resized, small, purified

  def _resize(self, images: tf.Tensor, size: int) -> tf.Tensor:
    if self.jit_compile:  # XLA has no ScaleAndTranslate; the same map as matmuls.
      return inference.matrix_resize(images, size)
    return image_ops.resize(images, size)

  def _generate_eager(self, resized: tf.Tensor):
    """[N, S, S, 3] in [0, 1] -> (small [N, S/scale, S/scale, 3], purified [N, S, S, 3])."""
    if self.mode == "super_only":
      small = self._resize(resized, self.small_size)
    else:
      small = tf.cast(self.sub_generator(resized, training=False), tf.float32)
    if self.mode == "sub_only":
      purified = self._resize(small, self.image_size)
    else:
      purified = tf.cast(self.super_generator(small, training=False), tf.float32)
    return small, tf.clip_by_value(purified, 0.0, 1.0)

  def __call__(self, images: tf.Tensor) -> tf.Tensor:
    """Purifies images: float32 [N, H, W, 3] in [0, 1] -> [N, S, S, 3] in [0, 1]."""
    return self.run_stages(images)[2]

  def stages(self, images: tf.Tensor) -> List[base.Stage]:
    _, small, purified = self.run_stages(images)
    first = "sub G" if self.mode != "super_only" else "bicubic down"
    second = "super G" if self.mode != "sub_only" else "bicubic up"
    return [(f"after {first}", small), (f"after {second}", purified)]
