"""The shipped purifiers by name, and one loader for a name or a path.

  >>> import cdgan_tf
  >>> cdgan_tf.presets()                                 # name -> Preset
  >>> purifier = cdgan_tf.load_purifier("imagenet-128")
  >>> purified = purifier(images)       # float32 [N, H, W, 3] in [0, 1] -> [N, 256, 256, 3]

The weights travel inside the package: `cdgan_tf/weights` (in the repository a relative
symlink to the top-level `weights/`, in an installed package a copy made by setuptools,
`setup.cfg [options.package_data]`). Each preset's folder holds `sub/` and `super/`
(`models.generator_files`) and a `MODEL_CARD.md`: geometry, training, the numbers it
reaches (docs/results.md) and what it is not for.

`load_purifier` also takes what the command lines take: a folder holding `sub/` and
`super/`, a (sub, super) pair of generator paths, a super generator whose
`generator.json` names its sub generator (`sub_model`), or an exported purifier
SavedModel (`export_defended.py` without --classifier).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Dict, Sequence, Union

from cdgan_tf.common import errors
from cdgan_tf.defenses import base
from cdgan_tf.defenses import cdgan as cdgan_lib
from cdgan_tf.defenses import exported
from cdgan_tf.models import generator_files

MODEL_CARD = "MODEL_CARD.md"


def weights_dir() -> pathlib.Path:
  """The folder of the shipped weights inside the package (`cdgan_tf/weights`)."""
  return pathlib.Path(__file__).resolve().parent / "weights"


@dataclasses.dataclass(frozen=True)
class Preset:
  """A shipped purifier.

  Attributes:
    name: What `load_purifier` takes ("imagenet-128", ...).
    description: One line: data, geometry, what it reaches.
    folder: Its folder under `weights_dir()`, holding `sub/`, `super/`, MODEL_CARD.md.
    image_size: The side inputs are resized to (the purifier's output side).
    scale: The bottleneck ratio (the sub generator's output is image_size / scale).
  """
  name: str
  description: str
  folder: str
  image_size: int
  scale: int

  @property
  def path(self) -> pathlib.Path:
    return weights_dir() / self.folder

  @property
  def model_card(self) -> pathlib.Path:
    """The path of the preset's MODEL_CARD.md."""
    return self.path / MODEL_CARD

  def card(self) -> str:
    """The text of the preset's model card."""
    return self.model_card.read_text(encoding="utf-8")

  def __repr__(self) -> str:
    return self.description


_PRESETS = (
    Preset("imagenet-128",
           "ImageNet, 256 -> 128 -> 256 px (scale 2), 2,000 + 1,500 steps; MobileNet-v2 "
           "under the transfer attack 23.54 -> 38.00 %, clean 69.54 % (recommended)",
           "imagenet/cdgan_scale2", 256, 2),
    Preset("imagenet-64",
           "ImageNet, the paper's 256 -> 64 -> 256 px (scale 4), 3,000 + 3,000 steps; "
           "MobileNet-v2 under the transfer attack 23.54 -> 30.92 %, clean 52.31 %",
           "imagenet/cdgan", 256, 4),
    Preset("imagenet-256",
           "ImageNet, 256 -> 256 -> 256 px (scale 1, no bottleneck), 400 + 300 steps from "
           "scratch on the attack mix + transfer pairs; keeps clean images (validation "
           "63.11 %, normal 63.4 %) and does not protect (held-out attacks 34.84 %, no "
           "defense 34.15 %): the far end of the trade-off, not a defense to deploy",
           "imagenet/cdgan_scale1", 256, 1),
    Preset("cifar10",
           "CIFAR-10, 32 -> 16 -> 32 px (scale 2), 4,000 + 4,000 steps; ResNet-20-v2 "
           "under the transfer attack 0.30 -> 38.80 %, clean 59.60 %",
           "cifar10/cdgan", 32, 2),
    Preset("cifar10-mix",
           "CIFAR-10, 32 -> 16 -> 32 px (scale 2), `cifar10` fine-tuned 1,000 + 1,000 steps "
           "on the attack mix and its MI-FGSM pairs; held-out validation attacks "
           "50.80 % (cifar10: 51.33), clean 64.40 % (59.80)",
           "cifar10/cdgan_mix", 32, 2),
)


def presets() -> Dict[str, Preset]:
  """The shipped purifiers: name -> Preset (description, model card), best first."""
  return {p.name: p for p in _PRESETS}


Source = Union[str, os.PathLike, Sequence[str]]


def _pair_folder(path: str):
  """(sub, super) when `path` is a folder holding both generators, else None."""
  sub, sup = os.path.join(path, "sub"), os.path.join(path, "super")
  for folder in (sub, sup):
    try:
      generator_files.find_generator(folder)
    except generator_files.GeneratorFileError:
      return None
  return sub, sup


def resolve(source: Source):
  """What `source` names: ("preset", Preset), ("pair", (sub, super)) or ("saved_model", dir).

  Raises:
    ValueError: `source` names nothing loadable; the message lists the presets.
  """
  if isinstance(source, (list, tuple)):
    if len(source) != 2:
      raise errors.UsageError(f"a generator pair is (sub, super), got {len(source)} paths")
    return "pair", (str(source[0]), str(source[1]))
  source = os.fspath(source)
  table = presets()
  if source in table:
    return "preset", table[source]
  if os.path.isfile(os.path.join(source, "saved_model.pb")):
    return "saved_model", source
  pair = _pair_folder(source) if os.path.isdir(source) else None
  if pair is not None:
    return "pair", pair
  info = None
  try:
    generator_files.find_generator(source)
    info = generator_files.read_info(source)
  except generator_files.GeneratorFileError:
    pass
  if info is not None and info.sub_model:
    sub = generator_files.resolve_sub_model(source, info)
    if sub:
      return "pair", (sub, source)
  raise errors.UsageError(
      f"{source!r} is neither a preset ({', '.join(table)}) nor a folder with sub/ and "
      "super/ generators, a super generator whose generator.json names its sub "
      "generator, nor an exported purifier SavedModel")


def load_purifier(source: Source, mode: str = "chain", compute_dtype: str = "float32",
                  jit_compile: bool = False) -> base.Purifier:
  """A CD-GAN purifier from a preset name or a path.

  Args:
    source: A preset name (`presets()`), a folder holding `sub/` and `super/`, a
      (sub, super) pair of generator paths (.keras file, export folder or training
      model_dir), a super generator whose generator.json names its sub generator, or
      an exported purifier SavedModel folder.
    mode: "chain" (CD-GAN), or the ablations "sub_only" / "super_only" (generators only).
    compute_dtype: "float32", "bfloat16" or "float16" (generators only,
      `defenses.cdgan.CdganPurifier`).
    jit_compile: Compile the generators with XLA (generators only).

  Returns:
    A `Purifier`: float32 [N, H, W, 3] in [0, 1], any H and W -> float32
    [N, S, S, 3] in [0, 1], S its working size (`image_size`; 256 for the ImageNet
    presets, 32 for CIFAR-10). `defenses.base.keep_input_size(p)` gives each image
    its own size back.

  Raises:
    ValueError: nothing loadable at `source`, or options an exported purifier lacks.
    GeneratorFileError: a generator path that does not load.
  """
  kind, what = resolve(source)
  if kind == "saved_model":
    if mode != "chain" or compute_dtype != "float32" or jit_compile:
      raise errors.UsageError(f"{what} is an exported purifier: mode, compute_dtype and "
                              "jit_compile apply to generators only")
    return exported.ExportedPurifier(what)
  sub, sup = ((str(what.path / "sub"), str(what.path / "super")) if kind == "preset"
              else what)
  return cdgan_lib.CdganPurifier.from_files(sub, sup, mode=mode,
                                            compute_dtype=compute_dtype,
                                            jit_compile=jit_compile)
