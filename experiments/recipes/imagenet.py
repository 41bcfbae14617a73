"""The ImageNet recipes: CD-GAN at the paper's geometry on real images (docs/results.md).

Roles (fixed): surrogate MobileNet-v1 0.75 192 (attack only); targets MobileNet-v2 1.0
224 (the paper's classifier), MobileNet-v1 0.5 160 and 0.25 128 (real quantized TFLite
models, scored by the interpreter); feature network the MobileNet-v1 1.0 embedding
extractor (GAN training only). The test split is `folders.select_subset(<the 1,300
val-sample stems>, 650)`, what `evaluate.py --max_images=650` evaluates; everything else
(the other 650 val images, the 1,000 class samples) is training data. The test split is
never used for training or for choosing settings.

Recipes (`python -m experiments run <name> [stage...]`, work folder default
/work/scratch/imagenet):

  imagenet_transfer   the DAmageNet-style transfer set (was make_transfer_set.sh):
                      split search attack evaluate pgd summary
  imagenet_cdgan      records, GANs per scale, evaluation, adaptive attacks, a stronger
                      test set, ship (was run_cdgan.sh)
  imagenet_scale2_long  the shipped scale-2 GANs: the scale-2 run continued to 2,000 +
                      1,500 steps in a copy, then evaluated and shipped (was
                      continue_scale2.sh)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Tuple

from experiments.recipes import common
from experiments.runner import Job, Recipe

DEFAULT_WORK = "/work/scratch/imagenet"
TEST_IMAGES = 650


@dataclasses.dataclass(frozen=True)
class Settings:
  """What an ImageNet recipe may change (`--set key=value`).

  Attributes:
    shared: The folder holding datasets/ and models/.
    eps, attack_steps, diversity: The transfer set's attack.
    search: The attack-setting search, "EPS[/STEPS[/DIVERSITY[/ens]]]" each (EPS in
      1/255; defaults 10 steps, diversity 0.5; "ens" = the v1 ensemble as surrogate).
    search_images: Images of each train set in the search.
    scales: The bottleneck factors trained (256 -> 256/scale -> 256).
    steps, super_steps: Sub / super GAN steps; warmup, super_warmup their content-only
      warm-ups (0: half the steps).
    batch, blocks, filters, d_filters, feature_weight: GAN sizes and loss.
    run_tag: Suffix of the run and result folders ("_long").
    allow_config_change: Continue runs with changed settings (recorded in each run's
      config_history.json).
    adaptive_images: Test images of the adaptive attacks; strong_eps the stronger set.
    train_sets: "val,class" or "val" (the 650 train val images only).
  """
  shared: str = "../shared"
  eps: str = "9/255"
  attack_steps: int = 40
  diversity: float = 1.0
  search: Tuple[str, ...] = ("8", "10", "12", "14", "16", "13", "12/10/1.0", "12/20",
                             "8/10/0.5/ens", "10/10/0.5/ens", "11/20/1.0", "10/20/1.0",
                             "11/20/0.5", "10/20/1.0/ens", "9/20/1.0/ens", "10/40/1.0",
                             "9/40/1.0", "10/30/1.0")
  search_images: int = 200
  scales: Tuple[str, ...] = ("4", "2")
  steps: int = 3000
  super_steps: int = 0
  warmup: int = 0
  super_warmup: int = 0
  batch: int = 8
  blocks: int = 8
  filters: int = 32
  d_filters: int = 16
  feature_weight: float = 0.2
  run_tag: str = ""
  allow_config_change: bool = False
  adaptive_images: int = 100
  strong_eps: str = "10/255"
  train_sets: Tuple[str, ...] = ("val", "class")


class _Paths:
  """The shared files of the ImageNet experiment."""

  def __init__(self, s: Settings):
    self.val = f"{s.shared}/datasets/imagenet_val_sample"
    self.val_labels = f"{self.val}/val.txt"
    self.cls = f"{s.shared}/datasets/imagenet_class_samples"
    self.cls_labels = f"{self.cls}/labels.txt"
    tflite = f"{s.shared}/models/tflite"
    self.surrogate = f"{tflite}/mobilenet_v1_0.75_192_quant.tflite"
    self.v2 = f"{tflite}/mobilenet_v2_1.0_224_quant.tflite"
    self.roles = common.Roles(
        targets=(self.v2, f"{tflite}/mobilenet_v1_0.5_160_quant.tflite",
                 f"{tflite}/mobilenet_v1_0.25_128_quant.tflite"),
        surrogate=self.surrogate,
        feature_network=f"{tflite}/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
    # Search only: the v1 ensemble as the surrogate (its members are then no targets).
    self.ensemble = ",".join([self.surrogate] + list(self.roles.targets[1:]))
    # The surrogate is scored too (white-box, a check on the manifest's numbers).
    self.scored = self.roles.targets + (self.surrogate,)

  def eval_settings(self, clean_dir=None, labels=None) -> common.EvalSettings:
    """DAmageNet-style images are already cropped: --center_crop=1.0."""
    return common.EvalSettings(clean_dir or self.val, labels or self.val_labels,
                               crop="damagenet", center_crop=1.0, batch_size=32)


def attack_settings(surrogate: str, eps: str, steps: int,
                    diversity: float) -> common.AttackSettings:
  return common.AttackSettings(surrogate=surrogate, algorithm="mifgsm", eps=eps, steps=steps,
                               decay=1.0, diversity_prob=diversity, crop="damagenet",
                               seed=0, batch_size=32, log_every=320)


def transfer_recipe(s: Settings, work: str) -> Recipe:
  """The transfer set (was make_transfer_set.sh)."""
  p = _Paths(s)
  search = []
  for setting in s.search:
    e, steps, diversity, ens = (setting.split("/") + ["", "", ""])[:4]
    steps, diversity = int(steps or 10), float(diversity or 0.5)
    tag = f"eps{e}_s{steps}_d{diversity}" + ("_ens" if ens == "ens" else "")
    surrogate = p.ensemble if ens == "ens" else p.surrogate
    for part, clean, labels in (("class", p.cls, p.cls_labels),
                                ("val", f"{work}/val_train", p.val_labels)):
      search.append(common.attack_job(
          f"search/{tag}/{part}", attack_settings(surrogate, f"{e}/255", steps, diversity),
          clean, f"{work}/search/{tag}/{part}", labels=labels, max_images=s.search_images))
      search.append(common.evaluate_job(
          f"results/search/{tag}_{part}", p.eval_settings(clean, labels), p.scored,
          f"{work}/results/search/{tag}_{part}",
          adversarial_dir=f"{work}/search/{tag}/{part}", num_samples=0))
  chosen = attack_settings(p.surrogate, s.eps, s.attack_steps, s.diversity)
  stages = {
      "split": [Job("split", "experiments.actions:split_test_train",
                    {"val_dir": p.val, "labels": p.val_labels, "work": work,
                     "test_images": TEST_IMAGES}, nice=0)],
      "search": search,
      "attack": [common.attack_job("attack/adv_val", chosen, p.val, f"{work}/adv_val",
                                   labels=p.val_labels),
                 common.attack_job("attack/adv_class", chosen, p.cls, f"{work}/adv_class",
                                   labels=p.cls_labels)],
      "evaluate": [
          common.evaluate_job("results/test", p.eval_settings(), p.scored,
                              f"{work}/results/test", adversarial_dir=f"{work}/adv_val",
                              max_images=TEST_IMAGES, num_samples=0),
          common.evaluate_job("results/train_val", p.eval_settings(f"{work}/val_train"),
                              p.scored, f"{work}/results/train_val",
                              adversarial_dir=f"{work}/adv_val", num_samples=0),
          common.evaluate_job("results/train_class",
                              p.eval_settings(p.cls, p.cls_labels), p.scored,
                              f"{work}/results/train_class",
                              adversarial_dir=f"{work}/adv_class", num_samples=0)],
      # 200 clean val images as published (227x227), the usual 87.5 % central crop.
      "pgd": [common.evaluate_job(
          "results/pgd_classifier_v2",
          common.EvalSettings(p.val, p.val_labels, center_crop=0.875, batch_size=32),
          (p.v2,), f"{work}/results/pgd_classifier_v2", attack="pgd_classifier",
          eps="4/255", steps=10, max_images=200, num_samples=0)],
      "summary": [Job("summary", "experiments/imagenet/summarize_transfer_set.py", {},
                      positional=(work, p.val, p.val_labels, str(TEST_IMAGES),
                                  "docs/results/imagenet/transfer_set.json"), nice=0)],
  }
  return Recipe("imagenet_transfer", "the DAmageNet-style ImageNet transfer set", s,
                stages, ("split", "attack", "evaluate", "pgd", "summary"))


def cdgan_recipe(s: Settings, work: str, name: str = "imagenet_cdgan",
                 copy_from: str = "") -> Recipe:
  """Records, GANs, evaluations and shipping (was run_cdgan.sh)."""
  p = _Paths(s)
  super_steps = s.super_steps or s.steps
  warmup, super_warmup = s.warmup or s.steps // 2, s.super_warmup or super_steps // 2
  records_sets = {"val": ("records_val", f"{work}/adv_val", p.val, p.val_labels),
                  "class": ("records_class", f"{work}/adv_class", p.cls, p.cls_labels)}
  records = [common.records_job(
      folder, adv, clean, f"{work}/{folder}", labels=labels, crop="damagenet",
      holdout_subset=TEST_IMAGES if part == "val" else None)
             for part, (folder, adv, clean, labels) in records_sets.items()
             if part in s.train_sets]
  glob = f"{work}/records_val" if tuple(s.train_sets) == ("val",) else f"{work}/records_*"

  def gan(steps: int, warmup_steps: int, scale: int) -> common.GanSettings:
    return common.GanSettings(
        image_size=256, scale=scale, batch_size=s.batch, train_steps=steps,
        warmup_steps=warmup_steps, num_res_blocks=s.blocks, filters=s.filters,
        discriminator_filters=s.d_filters, image_skip=True, content_loss="l1",
        adversarial_weight=1e-4, feature_extractor=p.roles.feature_network,
        feature_weight=s.feature_weight, summary_every=50, checkpoint_every=250,
        eval_every=500, eval_steps=10, seed=0,
        allow_config_change=True if s.allow_config_change else None)

  stages: Dict[str, List[Job]] = {
      "transfer": transfer_recipe(s, work).stages["split"] + transfer_recipe(
          s, work).stages["attack"],
      "records": records, "gans": [], "evaluate": [], "adaptive": [], "stronger": [],
      "ship": []}
  strong_tag = f"eps{s.strong_eps.split('/')[0]}"
  stages["stronger"].append(common.attack_job(
      f"attack/adv_val_test_{strong_tag}",
      attack_settings(p.surrogate, s.strong_eps, 40, 1.0), p.val,
      f"{work}/adv_val_test_{strong_tag}", labels=p.val_labels, max_images=TEST_IMAGES))
  if copy_from:
    stages["gans"] += [Job(f"copy/{name}", "experiments.actions:copy_run",
                           {"source": f"{work}/runs/{copy_from}",
                            "destination": f"{work}/runs/scale2{s.run_tag}"}, nice=0)]
  for scale_text in s.scales:
    scale = int(scale_text)
    run = f"scale{scale}{s.run_tag}"
    runs = f"{work}/runs/{run}"
    sub, sup = f"{runs}/sub", f"{runs}/super"
    # Recipe: feature loss on the embedding network, super GAN chained on sub G.
    stages["gans"] += common.gan_pair_jobs(
        f"runs/{run}", gan(s.steps, warmup, scale), gan(super_steps, super_warmup, scale),
        glob, runs, chain_on=sub)
    stages["evaluate"].append(common.evaluate_job(
        f"results/cdgan_{run}", p.eval_settings(), p.roles.targets,
        f"{work}/results/cdgan_{run}", adversarial_dir=f"{work}/adv_val", sub_model=sub,
        super_model=sup, defenses=("cdgan", "resize", "jpeg75", "median3", "sub_only",
                                   "super_only"), max_images=TEST_IMAGES))
    stages["adaptive"].append(common.evaluate_job(
        f"results/adaptive_{run}", dataclasses.replace(p.eval_settings(), batch_size=20),
        (p.v2,), f"{work}/results/adaptive_{run}", sub_model=sub, super_model=sup,
        defenses=("cdgan", "resize", "jpeg75"),
        attack=("pgd_classifier", "pgd_defended", "bpda"), eps="4/255", steps=10,
        num_samples=0, max_images=s.adaptive_images))
    stages["stronger"].append(common.evaluate_job(
        f"results/cdgan_{run}_{strong_tag}", p.eval_settings(), p.roles.targets,
        f"{work}/results/cdgan_{run}_{strong_tag}",
        adversarial_dir=f"{work}/adv_val_test_{strong_tag}", sub_model=sub,
        super_model=sup, defenses=("cdgan", "resize", "jpeg75", "median3"),
        max_images=TEST_IMAGES))
    # Scale 4 (the paper's) to weights/imagenet/cdgan, others to cdgan_scale<N>.
    destination = "weights/imagenet/cdgan" + ("" if scale == 4 else f"_scale{scale}")
    stages["ship"].append(common.ship_job(f"ship/{run}", runs, destination))
  defaults = ("transfer", "records", "gans", "evaluate", "adaptive", "ship")
  if copy_from:
    defaults = ("gans", "evaluate", "stronger", "adaptive", "ship")
  return Recipe(name, "CD-GAN on real ImageNet images", s, stages, defaults)


SCALE2_LONG = Settings(scales=("2",), run_tag="_long", steps=2000, super_steps=1500,
                       warmup=500, super_warmup=300, allow_config_change=True)


def recipes() -> Dict[str, tuple]:
  """name -> (description, factory(settings, work) -> Recipe, default Settings)."""
  return {
      "imagenet_transfer": ("the DAmageNet-style transfer set (surrogate MobileNet-v1 "
                            "0.75, MI-FGSM 9/255)", transfer_recipe, Settings()),
      "imagenet_cdgan": ("CD-GAN per scale: records, GANs, evaluation, ship",
                         cdgan_recipe, Settings()),
      "imagenet_scale2_long": (
          "the shipped scale-2 GANs: scale 2 continued to 2,000 + 1,500 steps",
          lambda s, w: cdgan_recipe(s, w, "imagenet_scale2_long", copy_from="scale2"),
          SCALE2_LONG),
  }
