"""Warm start: a new run's generator begins from an exported generator's weights.

`GanStep` calls `load_into` right after it builds its generator when
`TrainConfig.init_generator` is set (`--init_generator=PATH`). Resume semantics stay
as they are: the controller restores the newest checkpoint afterwards, so a resumed run
continues from its own weights, and only a run starting at step 0 (a new `model_dir`,
or `--restart`) keeps the loaded ones. The discriminator and both optimizers always
start fresh. Used to fine-tune the shipped CIFAR-10 generators on an attack mix
(issue 18).
"""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np

from cdgan_tf import config as config_lib
from cdgan_tf.common import errors
from cdgan_tf.models import generator_files


def check_info(info: Optional[generator_files.GeneratorInfo], path: str,
               role: config_lib.Role, scale: int) -> None:
  """Refuses a generator.json of another role or scale than the run's.

  Raises:
    UsageError: naming --init_generator, `path` and what differs.
  """
  if info is None:
    return
  if info.role is not config_lib.Role(role):
    raise errors.UsageError(f"--init_generator {path} holds a {info.role.value} generator; "
                     f"this run trains the {config_lib.Role(role).value} GAN")
  if info.scale != scale:
    raise errors.UsageError(f"--init_generator {path} is a scale-{info.scale} generator; this "
                     f"run has --scale={scale}")


def copy_weights(source: keras.Model, target: keras.Model, path: str = "") -> int:
  """Copies every weight of `source` into `target` (same architecture).

  Returns:
    The number of weight tensors copied.

  Raises:
    UsageError: another number of weights, or a weight of another shape (other
      --num_res_blocks / --filters / --image_skip).
  """
  src, dst = source.get_weights(), target.get_weights()
  if len(src) != len(dst):
    raise errors.UsageError(f"--init_generator {path} has {len(src)} weight tensors, this run's "
                     f"generator {len(dst)}: other --num_res_blocks / --filters / "
                     "--image_skip?")
  for i, (a, b) in enumerate(zip(src, dst)):
    if a.shape != b.shape:
      raise errors.UsageError(f"--init_generator {path}: weight {i} has shape {a.shape}, this "
                       f"run's generator {b.shape}: other --filters / --num_res_blocks?")
  target.set_weights([np.asarray(a) for a in src])
  return len(src)


def load_into(generator: keras.Model, path: str, role: config_lib.Role,
              scale: int) -> int:
  """Loads the exported generator at `path` and copies its weights into `generator`.

  Args:
    generator: The run's freshly built generator (inside the strategy's scope).
    path: A `.keras` file, an export folder or a training model_dir
      (`generator_files.find_generator`).
    role: The run's role; a generator.json of another role is refused.
    scale: The run's scale; a generator.json of another scale is refused.

  Returns:
    The number of weight tensors copied.
  """
  model, info = generator_files.load_generator(path)
  check_info(info, path, role, scale)
  return copy_weights(model, generator, path)
