"""Settings dataclasses shared by the recipes, and the jobs they turn into.

Each dataclass holds the flags of one program of the repo under the flag names that
program defines (fields left None are not passed, so the program's default holds):

  AttackSettings   python -m tfrecords_builder.transfer_set   (adversarial PNGs)
  GanSettings      train_sub.py / train_super.py          (GAN sizes, losses, steps)
  EvalSettings     evaluate.py                             (the clean side, the targets)

`Roles` names what each network is for; a recipe's targets are never its surrogate or
its feature network (checked).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from experiments.runner import Job, RecipeError, flag_dict


@dataclasses.dataclass(frozen=True)
class Roles:
  """The networks of an experiment and what each is for.

  Attributes:
    targets: The classifiers the defense protects and the evaluation scores.
    surrogate: The network(s) the transfer attack is made on (never a target).
    feature_network: The GANs' feature loss network ("" for none; never a target).
  """
  targets: Tuple[str, ...]
  surrogate: str
  feature_network: str = ""

  def __post_init__(self):
    for other, what in ((self.surrogate, "surrogate"), (self.feature_network, "feature network")):
      shared = set(other.split(",")) & set(self.targets) - {""}
      if shared:
        raise RecipeError(f"{', '.join(sorted(shared))} is both a target and the {what}")


@dataclasses.dataclass(frozen=True)
class AttackSettings:
  """A transfer set's attack (flags of `python -m tfrecords_builder.transfer_set`).

  `algorithm` is the attack algorithm (fgsm, pgd, mifgsm, ...), not one of evaluate.py's
  threat models. `seeding` "batch": the per-batch randomness the recipes' transfer sets
  (the shipped weights' training data and the committed tables' attacks) were made
  with, so the recipes remake the same bytes; "image" for new sets (`transfer_set`).
  """
  surrogate: str
  algorithm: str = "mifgsm"
  eps: str = "16/255"
  steps: int = 10
  decay: Optional[float] = None
  diversity_prob: Optional[float] = None
  crop: Optional[str] = None
  seed: int = 0
  seeding: str = "batch"
  batch_size: int = 100
  log_every: int = 1000


@dataclasses.dataclass(frozen=True)
class GanSettings:
  """One GAN's training (flags of train_sub.py / train_super.py)."""
  image_size: int
  scale: int
  batch_size: int
  train_steps: int
  warmup_steps: int
  num_res_blocks: int = 8
  filters: int = 64
  discriminator_filters: Optional[int] = None
  image_skip: bool = True
  learning_rate: Optional[float] = None
  content_loss: str = "l1"
  adversarial_weight: float = 1e-4
  feature_extractor: Optional[str] = None
  feature_weight: Optional[float] = None
  clean_pair_fraction: Optional[float] = None
  augment_min_scale: Optional[float] = None
  summary_every: int = 100
  checkpoint_every: int = 500
  eval_every: int = 500
  eval_steps: int = 20
  seed: int = 0
  init_generator: Optional[str] = None
  allow_config_change: Optional[bool] = None


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """The clean side of an evaluation (flags of evaluate.py)."""
  clean_dir: str
  labels: Optional[str] = None
  crop: Optional[str] = None
  center_crop: Optional[float] = None
  batch_size: int = 100


def attack_job(name: str, attack: AttackSettings, clean_dir: str, output_dir: str,
               labels: Optional[str] = None, max_images: Optional[int] = None) -> Job:
  """A transfer set of `clean_dir` into `output_dir` (resumes per image)."""
  flags = {"clean_dir": clean_dir}
  if labels:
    flags["labels"] = labels
  flags.update(flag_dict(attack))
  if max_images:
    flags["max_images"] = max_images
  flags["output_dir"] = output_dir
  return Job(name, "-m tfrecords_builder.transfer_set", flags)


def records_job(name: str, adversarial_dir: str, clean_dir: str, output_dir: str,
                **extra) -> Job:
  """Paired TFRecords (`python -m tfrecords_builder`)."""
  flags = {"adversarial_dir": adversarial_dir, "clean_dir": clean_dir}
  flags.update({k: v for k, v in extra.items() if v is not None})
  flags.update(val_fraction=flags.pop("val_fraction", 0.05), workers=2, output_dir=output_dir)
  return Job(name, "-m tfrecords_builder", flags)


def train_job(name: str, role: str, gan: GanSettings, records: str, model_dir: str,
              sub_model: Optional[str] = None, more_records: Sequence[str] = (),
              shares: Sequence[float] = ()) -> Job:
  """One GAN (`train_<role>.py`); resumes from `model_dir`'s checkpoints.

  Args:
    records: The records folder (train-* and val-* shards).
    more_records: Other records folders whose train-* shards join the training set
      (validation stays `records`' val-*).
    shares: () or one share of the training draws per folder, `records` first
      (`--train_shares`).
  """
  if role not in ("sub", "super"):
    raise RecipeError(f"role {role}: expected sub or super")
  folders = (records, *more_records)
  if shares and len(shares) != len(folders):
    raise RecipeError(f"{len(shares)} shares for {len(folders)} records folders")
  train = ",".join(f"{folder}/train-*" for folder in folders)
  flags = {"train_records": train, "val_records": f"{records}/val-*"}
  if shares:
    flags["train_shares"] = tuple(shares)
  flags.update(flag_dict(gan))
  if sub_model:
    if role != "super":
      raise RecipeError("only the super GAN trains on a sub generator's outputs")
    flags["sub_model"] = sub_model
  flags["model_dir"] = model_dir
  return Job(name, f"train_{role}.py", flags)


def evaluate_job(name: str, data: EvalSettings, classifiers: Sequence[str], output_dir: str,
                 adversarial_dir: Optional[str] = None, sub_model: Optional[str] = None,
                 super_model: Optional[str] = None, defenses: Sequence[str] = (),
                 max_images: Optional[int] = None, **extra) -> Job:
  """One evaluate.py run into `output_dir`."""
  flags = {"clean_dir": data.clean_dir}
  if adversarial_dir:
    flags["adversarial_dir"] = adversarial_dir
  for key in ("labels", "crop", "center_crop"):
    if getattr(data, key) is not None:
      flags[key] = getattr(data, key)
  flags["classifiers"] = tuple(classifiers)
  if sub_model:
    flags.update(sub_model=sub_model, super_model=super_model)
  if defenses:
    flags["defenses"] = tuple(defenses)
  flags["batch_size"] = data.batch_size
  flags.update({k: v for k, v in extra.items() if v is not None})
  if max_images:
    flags["max_images"] = max_images
  flags["output_dir"] = output_dir
  return Job(name, "evaluate.py", flags)


def gan_pair_jobs(prefix: str, sub_gan: GanSettings, super_gan: GanSettings, records: str,
                  runs: str, chain_on: Optional[str] = None) -> list:
  """Sub and super GAN into `runs/{sub,super}`.

  Args:
    chain_on: The sub generator the super GAN trains on the outputs of (None: the super
      GAN trains on bicubic-resized images, as in the paper).
  """
  return [train_job(f"{prefix}/sub", "sub", sub_gan, records, os.path.join(runs, "sub")),
          train_job(f"{prefix}/super", "super", super_gan, records,
                    os.path.join(runs, "super"), sub_model=chain_on)]


def ship_job(name: str, runs: str, destination: str) -> Job:
  """Copies `runs/{sub,super}`'s exported generators to `destination/{sub,super}`."""
  return Job(name, "experiments.actions:ship_generators",
             {"runs": runs, "destination": destination}, nice=0)


def named_recipes(table: Mapping[str, tuple], recipe: Callable) -> Dict[str, tuple]:
  """A module's registry entries from `{name: (description, settings)}` and its one
  `recipe(settings, work, name=...)` factory: name -> (description, factory, settings)."""
  return {name: (description, functools.partial(recipe, name=name), settings)
          for name, (description, settings) in table.items()}
