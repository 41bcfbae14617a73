"""The exported generator on disk: `generator.keras` and its metadata `generator.json`.

The trainer writes both into `<model_dir>/export/`; the defenses, `evaluate.py`,
`export_defended.py` and the shipped weights (`weights/<dataset>/cdgan/{sub,super}/`) read
them back here, so writer and reader agree on one layout:

  generator.keras   Keras 3 native file; loads with `keras.models.load_model` once
                    `cdgan_tf.models` is imported (it registers the custom layers)
  generator.json    {"role", "scale", "image_size", "input_size", "output_size",
                     "num_res_blocks", "filters", "image_skip", "step", "sub_model"}

A generator path may name the `.keras` file, the folder holding it, or a training
`model_dir` (whose `export/` holds it).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple

import keras
import tensorflow as tf

from cdgan_tf import config as config_lib
from cdgan_tf.common import errors
from cdgan_tf.common import files
from cdgan_tf.models import layers  # noqa: F401  (registers the custom layers)

GENERATOR_FILE = "generator.keras"
INFO_FILE = "generator.json"
EXPORT_DIR = "export"


class GeneratorFileError(errors.UsageError):
  """A generator path that does not hold a loadable generator; the message names it."""


@dataclasses.dataclass(frozen=True)
class GeneratorInfo:
  """What `generator.json` records about an exported generator.

  Attributes:
    role: Which GAN it comes from.
    scale: The resolution ratio it was trained for.
    image_size: The large side it was trained at (the small one is image_size / scale).
    num_res_blocks, filters, image_skip: Its architecture.
    step: The training step it was exported at.
    sub_model: For a super generator trained on a sub generator's outputs (chained
      training): that generator's path; "" otherwise.
  """
  role: config_lib.Role
  scale: int
  image_size: int
  num_res_blocks: int = 0
  filters: int = 0
  image_skip: bool = False
  step: int = 0
  sub_model: str = ""

  def __post_init__(self):
    object.__setattr__(self, "role", config_lib.Role(self.role))

  @property
  def input_size(self) -> int:
    return self.role.input_size(self.image_size, self.scale)

  @property
  def output_size(self) -> int:
    return self.role.output_size(self.image_size, self.scale)

  def to_dict(self) -> dict:
    content = config_lib.json_ready(dataclasses.asdict(self))
    content.update(input_size=self.input_size, output_size=self.output_size)
    return content

  @classmethod
  def from_dict(cls, content: dict) -> "GeneratorInfo":
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in content.items() if k in fields})


def _folders(path: str):
  """The folders that may hold the generator files for `path`."""
  path = str(path)
  folder = os.path.dirname(path) if path.endswith(".keras") else path
  return (folder, os.path.join(folder, EXPORT_DIR))


def find_generator(path: str) -> str:
  """The `.keras` file behind `path` (file, export folder or training model_dir).

  Raises:
    GeneratorFileError: no generator file there.
  """
  if str(path).endswith(".keras") and tf.io.gfile.exists(path):
    return str(path)
  for folder in _folders(path):
    candidate = os.path.join(folder, GENERATOR_FILE)
    if tf.io.gfile.exists(candidate):
      return candidate
  raise GeneratorFileError(f"no generator at {path} (expected a .keras file, or a folder "
                           f"or training model_dir with {EXPORT_DIR}/{GENERATOR_FILE})")


def read_info(path: str) -> Optional[GeneratorInfo]:
  """The `generator.json` next to the generator at `path`, or None when there is none."""
  for folder in _folders(path):
    candidate = os.path.join(folder, INFO_FILE)
    if tf.io.gfile.exists(candidate):
      try:
        return GeneratorInfo.from_dict(files.read_json(candidate))
      except (ValueError, TypeError, KeyError) as e:
        raise GeneratorFileError(f"{candidate}: not a generator description ({e})") from e
  return None


def resolve_sub_model(path: str, info: Optional[GeneratorInfo] = None) -> str:
  """Where the sub generator named by a super generator's `generator.json` is, or "".

  The shipped weights record it relative to the repository root
  ("weights/imagenet/cdgan_scale2/sub"); that path is tried as given (absolute, or
  relative to the working folder), then relative to the `cdgan_tf` package folder,
  which holds `weights/` both in the repository (a symlink) and once installed.

  Args:
    path: The super generator (.keras file, export folder or training model_dir).
    info: Its `GeneratorInfo` (read from `path` when None).
  """
  info = info if info is not None else read_info(path)
  if info is None or not info.sub_model:
    return ""
  package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for candidate in (info.sub_model, os.path.join(package, info.sub_model)):
    try:
      find_generator(candidate)
      return candidate
    except GeneratorFileError:
      continue
  return ""


def load_generator(path: str) -> Tuple[keras.Model, Optional[GeneratorInfo]]:
  """Loads an exported generator and its metadata.

  Args:
    path: The `.keras` file, its folder, or a training model_dir.

  Returns:
    (model, info): the Keras model, float32 [N, h, w, 3] in [0, 1] -> float32
    [N, h', w', 3] in [0, 1]; and its `GeneratorInfo` (None without generator.json).

  Raises:
    GeneratorFileError: nothing loadable at `path`.
  """
  model_path = find_generator(path)
  try:
    model = keras.models.load_model(model_path, compile=False)
  except Exception as e:  # pylint: disable=broad-except
    raise GeneratorFileError(f"could not load generator {model_path}: "
                             f"{type(e).__name__}: {e}") from e
  return model, read_info(path)


def save_generator(model: keras.Model, info: GeneratorInfo, export_dir: str) -> str:
  """Writes `generator.keras` and `generator.json` into `export_dir`, each atomically.

  Returns:
    The path of the `.keras` file.
  """
  tf.io.gfile.makedirs(export_dir)
  path = os.path.join(export_dir, GENERATOR_FILE)
  files.remove_stale_temporaries(export_dir)
  with files.atomic_path(path) as tmp:
    model.save(tmp)
  files.write_json(os.path.join(export_dir, INFO_FILE), info.to_dict())
  return path


def copy_generator(source: str, export_dir: str, **changes) -> str:
  """Copies the exported generator at `source` into `export_dir`, each file atomically.

  The `.keras` file is copied byte for byte; `generator.json` is rewritten from its
  `GeneratorInfo` with `changes` applied (e.g. `sub_model=` the shipped sub generator's
  folder, when a chained super generator is shipped next to it).

  Args:
    source: A `.keras` file, its folder, or a training model_dir.
    export_dir: The folder to write `generator.keras` and `generator.json` into.
    **changes: GeneratorInfo fields to record differently.

  Returns:
    The path of the copied `.keras` file.

  Raises:
    GeneratorFileError: no generator, or no generator.json, at `source`; or a change
      that names no GeneratorInfo field.
  """
  model_path = find_generator(source)
  info = read_info(source)
  if info is None:
    raise GeneratorFileError(f"{source}: no {INFO_FILE} next to {model_path}")
  unknown = set(changes) - {f.name for f in dataclasses.fields(GeneratorInfo)}
  if unknown:
    raise GeneratorFileError(f"not GeneratorInfo fields: {', '.join(sorted(unknown))}")
  tf.io.gfile.makedirs(export_dir)
  path = os.path.join(export_dir, GENERATOR_FILE)
  files.remove_stale_temporaries(export_dir)
  with files.atomic_path(path) as tmp:
    tf.io.gfile.copy(model_path, tmp, overwrite=True)
  files.write_json(os.path.join(export_dir, INFO_FILE),
                   dataclasses.replace(info, **changes).to_dict())
  return path
