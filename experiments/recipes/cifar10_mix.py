"""CIFAR-10 purifiers trained on the attack mix (issue 18), chosen on held-out attacks.

One work folder (default /work/scratch/gen) holds:

  cifar10/                 `python -m tfrecords_builder.mix --mix=cifar10`: the attacked
                           PNGs, mix_manifest.json, records/{train,val}-*
  runs/<run>/{sub,super}   the GANs; <run> = warm<tag>: both generators start from the
                           shipped ones (`--init_generator`) and are fine-tuned on the mix
  val/, test/              `experiments/generalization/table.py` work folders (attacked
                           PNGs shared by every candidate; evaluations per eval tag)

Stages (`python -m experiments run cifar10_mix_warm [stage...] --work=...`):

  mix         the attack-mix records (resumable)
  sub         the sub GAN, warm-started from weights/cifar10/cdgan/sub
  val_sub     validation table of (new sub -> shipped super): the cheap candidate
  super       the super GAN, chained on the new sub, warm-started from the shipped super
  val         validation table of the new pair
  val_shipped validation table of the shipped pair (the bar to beat; with baselines)
  test_shipped test-split table of the shipped pair (CD-GAN only: the baselines are
              the committed cifar10_before table's; makes the attacked test PNGs)
  test        test-split table of the new pair (only for the winner on validation)
  ship        copies runs/<run>/{sub,super} to weights/cifar10/cdgan_mix

The choice between candidates is made on the `val*` tables (`--dataset=cifar10_val`,
train images outside every training set, attacks no training pair used), never on the
test split.
"""

from __future__ import annotations

import dataclasses
from typing import Dict

from experiments.recipes import cifar10
from experiments.recipes import common
from experiments.recipes.cifar10 import ROLES, SHIPPED, WEIGHTS
from experiments.runner import Job, Recipe, RecipeError

DEFAULT_WORK = "/work/scratch/gen"
TABLE = "-m experiments.generalization.table"


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the mix recipe may change (`--set key=value`).

  Attributes:
    sub_steps / super_steps: Fine-tuning steps of each GAN (the shipped ones had
      4,000 + 4,000 from scratch).
    warmup_steps: Content-only steps at the start of each (the discriminator is new).
    learning_rate: Adam learning rate of the fine-tuning (the shipped run's was 1e-4).
    feature_weight: Feature loss weight on densenet_feature (shipped: 0.2).
    clean_fraction: Extra clean -> clean share per batch (0: the mix's own 10 % only).
    val_images / test_images: Images of the validation / test tables.
    tag: Appended to the run folder, so variants live side by side.
    scale: Large / small ratio of the chain (2: 32 -> 16 -> 32; 1: two 32 -> 32
      denoisers, no bottleneck).
    warm: Start both generators from the shipped ones (scale 2 only) instead of
      random weights.
    with_transfer: Also train on the shipped recipe's pairs (MI-FGSM 16/255 on
      vgg_surrogate, 10,000 train images: the cifar10 recipes' `attack` and `records`
      stages, under `transfer_work`).
    transfer_work: The cifar10 recipes' work folder holding records/.
  """
  sub_steps: int = 600
  super_steps: int = 600
  warmup_steps: int = 100
  learning_rate: float = 5e-5
  feature_weight: float = 0.2
  clean_fraction: float = 0.0
  val_images: int = 500
  test_images: int = 500
  tag: str = ""
  scale: int = 2
  warm: bool = True
  with_transfer: bool = False
  transfer_work: str = cifar10.DEFAULT_WORK


def run_name(s: Settings) -> str:
  """warm / scratch, then _s<scale> unless 2, _transfer with the MI-FGSM pairs, the tag."""
  return ("warm" if s.warm else "scratch") + ("" if s.scale == 2 else f"_s{s.scale}") + (
      "_transfer" if s.with_transfer else "") + s.tag


def gan_settings(s: Settings, role: str) -> common.GanSettings:
  if s.warm and s.scale != 2:
    raise RecipeError(f"warm=True needs scale 2 (the shipped generators'), not {s.scale}")
  steps = s.sub_steps if role == "sub" else s.super_steps
  every = 100 if steps < 2000 else 500  # Checkpoints and validation points.
  return common.GanSettings(
      image_size=32, scale=s.scale, batch_size=16, num_res_blocks=8, filters=64,
      image_skip=True, learning_rate=s.learning_rate, content_loss="l1",
      adversarial_weight=1e-4, feature_extractor=ROLES.feature_network,
      feature_weight=s.feature_weight, clean_pair_fraction=s.clean_fraction or None,
      summary_every=50, checkpoint_every=every, eval_every=every, eval_steps=20, seed=0,
      train_steps=s.sub_steps if role == "sub" else s.super_steps,
      warmup_steps=s.warmup_steps,
      init_generator=f"{SHIPPED}/{role}" if s.warm else None)


def table_job(name: str, dataset: str, work: str, images: int, tag: str, output: str,
              sub: str = "", sup: str = "", defenses=("cdgan",),
              seeding: str = "batch") -> Job:
  """One generalization table (resumable; attacked PNGs shared within `work`).

  `seeding` "batch": the recipes' tables keep the per-batch attack seeds their committed
  tables were made with, so a new candidate is scored on the same attacked PNGs as the
  purifiers before it (table.py's own default is "image").
  """
  flags = {"dataset": dataset, "work": work, "max_images": images, "eval_tag": tag,
           "defenses": tuple(defenses)}
  if sub:
    flags.update(sub_model=sub, super_model=sup)
  flags["seeding"] = seeding
  flags["output"] = output
  return Job(name, TABLE, flags, nice=10)


def recipe(s: Settings, work: str, name: str = "cifar10_mix_warm") -> Recipe:
  run = run_name(s)
  runs, records = f"{work}/runs/{run}", f"{work}/cifar10/records"
  more = (f"{s.transfer_work}/records",) if s.with_transfer else ()
  sub, sup = f"{runs}/sub", f"{runs}/super"
  every = ("cdgan", "resize", "jpeg75", "median3")
  stages: Dict[str, list] = {
      "mix": [Job("mix/cifar10", "-m tfrecords_builder.mix",
                  {"mix": "cifar10", "output_dir": f"{work}/cifar10",
                   "shared_dir": "../shared"}, nice=10)],
      "sub": [dataclasses.replace(common.train_job(
          f"{run}/sub", "sub", gan_settings(s, "sub"), records, sub, more_records=more),
                                  nice=10)],
      "val_sub": [table_job(f"{run}/val_sub", "cifar10_val", f"{work}/val", s.val_images,
                            f"{run}_sub", f"{work}/val/{run}_sub", sub, f"{SHIPPED}/super")],
      "super": [dataclasses.replace(common.train_job(
          f"{run}/super", "super", gan_settings(s, "super"), records, sup,
          sub_model=sub, more_records=more), nice=10)],
      "val": [table_job(f"{run}/val", "cifar10_val", f"{work}/val", s.val_images, run,
                        f"{work}/val/{run}", sub, sup)],
      "val_shipped": [table_job("shipped/val", "cifar10_val", f"{work}/val", s.val_images,
                                "shipped", f"{work}/val/shipped", defenses=every)],
      "test_shipped": [table_job("shipped/test", "cifar10", f"{work}/test", s.test_images,
                                 "shipped", f"{work}/test/shipped")],
      "test": [table_job(f"{run}/test", "cifar10", f"{work}/test", s.test_images, run,
                         f"{work}/test/{run}", sub, sup)],
      "ship": [common.ship_job(f"{run}/ship", runs, f"{WEIGHTS}/cdgan_mix")],
  }
  defaults = ("mix", "sub", "val_sub", "super", "val", "val_shipped")
  if s.with_transfer:  # The transfer pairs: the cifar10 recipes' shared jobs.
    shared = cifar10.shared_stages(cifar10.Settings(), s.transfer_work)
    stages = {"mix": stages.pop("mix"),
              "transfer": shared["attack"][:1] + shared["records"], **stages}
    defaults = ("mix", "transfer") + defaults[1:]
  if not s.warm:  # No (new sub -> shipped super) candidate: the geometry may differ.
    del stages["val_sub"]
    defaults = tuple(d for d in defaults if d != "val_sub")
  return Recipe(name, RECIPES[name][0], s, stages, defaults)


RECIPES = {
    "cifar10_mix_warm": ("the shipped GANs fine-tuned on the cifar10 attack mix",
                         Settings()),
    "cifar10_mix_transfer_warm": (
        "the shipped GANs fine-tuned on the mix + the shipped recipe's MI-FGSM 16/255 pairs",
        Settings(with_transfer=True, sub_steps=1000, super_steps=1000)),
    "cifar10_mix_transfer_scratch": (
        "the shipped recipe (4,000 + 4,000 steps, half warm-up) from scratch on the mix + "
        "its MI-FGSM 16/255 pairs",
        Settings(with_transfer=True, warm=False, sub_steps=4000, super_steps=4000,
                 warmup_steps=2000, learning_rate=1e-4)),
    "cifar10_mix_transfer_s1": (
        "scale 1 (two 32 -> 32 denoisers, no bottleneck) from scratch on the mix + the "
        "MI-FGSM 16/255 pairs, 4,000 + 4,000 steps",
        Settings(with_transfer=True, warm=False, scale=1, sub_steps=4000, super_steps=4000,
                 warmup_steps=2000, learning_rate=1e-4)),
}


def recipes() -> Dict[str, tuple]:
  """name -> (description, factory(settings, work) -> Recipe, default Settings)."""
  return common.named_recipes(RECIPES, recipe)
