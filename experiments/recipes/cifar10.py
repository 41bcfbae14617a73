"""The CIFAR-10 recipes: the scaled-down CD-GAN experiment (docs/results.md, "CIFAR-10").

One work folder holds every recipe's files (default /work/scratch/cifar):

  adv_train/, adv_test/    the strong transfer sets (MI-FGSM 16/255 on the VGG surrogate)
  weak/adv_test            the weak transfer set (8/255), weak/probe/eps<N> (train images)
  records/                 paired TFRecords of the attacked training images
  recipes/<run>/           a recipe's GANs ({sub,super}) and results (results_<stage>)
  shipped/                 the shipped weights' evaluations

Recipes (`python -m experiments run <name> [stage...]`):

  cifar10_paper            the paper's recipe end to end (was run_cdgan.sh): classifiers,
                           transfer sets, records, GANs, evaluation, adaptive attacks
  cifar10_weak             the weak transfer set and the shipped weights against it
                           (was weak_transfer_set.sh)
  cifar10_shipped          the shipped weights (weights/cifar10/cdgan) evaluated
  cifar10_<lever>          the recipe search (was recipes.sh): clean, chained, feature,
                           combo, feature_chained (the shipped one: `ship` copies its
                           generators to weights/cifar10/cdgan)

Shared jobs (the transfer sets, the records) have one name and one settings hash, so
whichever recipe runs them first does, and the others skip them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Tuple

from experiments.recipes import common
from experiments.runner import Job, Recipe

WEIGHTS = "weights/cifar10"
ROLES = common.Roles(
    targets=(f"{WEIGHTS}/resnet_v2.keras", f"{WEIGHTS}/mobilenet_v2.keras",
             f"{WEIGHTS}/inception.keras"),
    surrogate=f"{WEIGHTS}/vgg_surrogate.keras",
    feature_network=f"{WEIGHTS}/densenet_feature.keras")
SHIPPED = f"{WEIGHTS}/cdgan"
FULL_DEFENSES = ("cdgan", "resize", "jpeg75", "bits4", "median3", "sub_only", "super_only")
COMPARE_DEFENSES = ("cdgan", "resize", "jpeg75", "sub_only", "super_only")
ADAPTIVE_DEFENSES = ("cdgan", "resize", "jpeg75")
ADAPTIVE_ATTACKS = ("pgd_classifier", "pgd_defended", "bpda")


@dataclasses.dataclass(frozen=True)
class Settings:
  """What a CIFAR-10 recipe may change (`--set key=value`).

  Attributes:
    data_dir: CIFAR-10 class folders ({train,test}/<class>/*.png|jpg).
    train_images: Attacked training images the GANs learn from (a fixed subset).
    eval_images: Test images of the transfer-attack evaluations (a fixed subset).
    adaptive_images: Test images of the white-box / adaptive attacks.
    strong_eps / weak_eps: The two transfer sets' budgets.
    adaptive_eps: The white-box attacks' budget.
    probe_eps: The weak set's eps probe on training images, in 1/255.
    probe_images: Training images of that probe.
    steps: Each GAN's steps (half of them a content-only warm-up).
    feature_weight: The feature loss weight (recipes with the feature loss).
    clean_fraction: Share of clean -> clean pairs per batch (recipes with clean pairs).
    tag: Appended to the run folder, so variants live side by side.
  """
  data_dir: str = os.environ.get("CDGAN_DATA_DIR", "../shared/datasets/cifar10")
  train_images: int = 10000
  eval_images: int = 2000
  adaptive_images: int = 300
  strong_eps: str = "16/255"
  weak_eps: str = "8/255"
  adaptive_eps: str = "8/255"
  probe_eps: Tuple[str, ...] = ("8", "9")
  probe_images: int = 1000
  steps: int = 2000
  feature_weight: float = 0.02
  clean_fraction: float = 0.5
  tag: str = ""


# name -> (description, levers, default settings changes). Levers: "clean" (clean pairs),
# "feature" (feature loss), "chained" (super GAN on the sub generator's outputs),
# "chained_paper" (super GAN on the paper recipe's sub generator).
SEARCH = {
    "paper": ("the paper's recipe: adversarial pairs, pixel + adversarial loss", (), {}),
    "clean": ("+ clean -> clean pairs", ("clean",), {}),
    "chained": ("super GAN on the paper sub generator's outputs", ("chained_paper",), {}),
    "feature": ("+ feature loss on the DenseNet feature network", ("feature",), {}),
    "combo": ("clean pairs + feature loss + chained", ("clean", "feature", "chained"), {}),
    "feature_chained": ("feature loss 0.2 + chained, 4,000 steps: the shipped weights",
                        ("feature", "chained"),
                        {"steps": 4000, "feature_weight": 0.2, "tag": "_w0.2_s4000"}),
}


def attack_settings(eps: str) -> common.AttackSettings:
  return common.AttackSettings(surrogate=ROLES.surrogate, algorithm="mifgsm", eps=eps,
                               steps=10, diversity_prob=0.5, seed=0, batch_size=100,
                               log_every=1000)


def gan_settings(s: Settings, levers=()) -> common.GanSettings:
  feature = "feature" in levers
  return common.GanSettings(
      image_size=32, scale=2, batch_size=16, num_res_blocks=8, filters=64,
      image_skip=True, content_loss="l1", adversarial_weight=1e-4,
      feature_extractor=ROLES.feature_network if feature else None,
      feature_weight=s.feature_weight if feature else None,
      clean_pair_fraction=s.clean_fraction if "clean" in levers else None,
      summary_every=100, checkpoint_every=500, eval_every=500, eval_steps=20, seed=0,
      train_steps=s.steps, warmup_steps=s.steps // 2)


def _test(s: Settings) -> common.EvalSettings:
  return common.EvalSettings(clean_dir=f"{s.data_dir}/test", batch_size=100)


def shared_stages(s: Settings, work: str) -> Dict[str, List[Job]]:
  """The transfer sets and the records every GAN recipe needs."""
  strong = attack_settings(s.strong_eps)
  return {
      "attack": [
          common.attack_job("attack/adv_train", strong, f"{s.data_dir}/train",
                            f"{work}/adv_train", max_images=s.train_images),
          common.attack_job("attack/adv_test", strong, f"{s.data_dir}/test",
                            f"{work}/adv_test")],
      "weak_attack": [
          common.attack_job("attack/weak_test", attack_settings(s.weak_eps),
                            f"{s.data_dir}/test", f"{work}/weak/adv_test",
                            max_images=s.eval_images)],
      "records": [
          common.records_job("records", f"{work}/adv_train", f"{s.data_dir}/train",
                             f"{work}/records")],
  }


def evaluation_stages(s: Settings, work: str, name: str, sub: str, sup: str,
                      results: str) -> Dict[str, List[Job]]:
  """compare (strong + weak, the recipe table), full (every defense), adaptive."""
  test = _test(s)
  compare = [common.evaluate_job(
      f"{name}/results_{attack}", test, ROLES.targets, f"{results}/results_{attack}",
      adversarial_dir=adv, sub_model=sub, super_model=sup, defenses=COMPARE_DEFENSES,
      max_images=s.eval_images)
             for attack, adv in (("strong", f"{work}/adv_test"),
                                 ("weak", f"{work}/weak/adv_test"))]
  return {
      "compare": compare,
      "full": [common.evaluate_job(
          f"{name}/results_full", test, ROLES.targets, f"{results}/results_full",
          adversarial_dir=f"{work}/adv_test", sub_model=sub, super_model=sup,
          defenses=FULL_DEFENSES, max_images=s.eval_images)],
      "adaptive": [common.evaluate_job(
          f"{name}/results_adaptive", test, ROLES.targets, f"{results}/results_adaptive",
          sub_model=sub, super_model=sup, defenses=ADAPTIVE_DEFENSES,
          attack=ADAPTIVE_ATTACKS, eps=s.adaptive_eps, steps=10,
          max_images=s.adaptive_images)],
  }


def search_recipe(lever_name: str, s: Settings, work: str) -> Recipe:
  """One recipe of the recipe search (and `paper`, the run_cdgan.sh one)."""
  description, levers, _ = SEARCH[lever_name]
  run_name = f"{lever_name}{s.tag}"
  runs = f"{work}/recipes/{run_name}"
  stages = {}
  if lever_name == "paper":
    stages["classifiers"] = [Job("classifiers", "experiments/cifar10/train_classifiers.py",
                                 {"data_dir": s.data_dir, "output_dir": WEIGHTS})]
  stages.update(shared_stages(s, work))
  gan = gan_settings(s, levers)
  sub = f"{runs}/sub"
  if "chained_paper" in levers:  # Only the super GAN is new: on the paper sub generator.
    sub = f"{work}/recipes/paper/sub"
    stages["gans"] = [common.train_job(f"{run_name}/super", "super", gan,
                                       f"{work}/records", f"{runs}/super", sub_model=sub)]
  else:
    stages["gans"] = common.gan_pair_jobs(run_name, gan, gan, f"{work}/records", runs,
                                          chain_on=sub if "chained" in levers else None)
  stages.update(evaluation_stages(s, work, run_name, sub, f"{runs}/super", runs))
  stages["ship"] = [common.ship_job(f"{run_name}/ship", runs, SHIPPED)]
  defaults = (["classifiers"] if lever_name == "paper" else []) + [
      "attack", "weak_attack", "records", "gans", "compare"]
  if lever_name == "paper":
    defaults += ["full", "adaptive"]
  return Recipe(f"cifar10_{lever_name}", description, s, stages, tuple(defaults))


def weak_recipe(s: Settings, work: str) -> Recipe:
  """The weak transfer set (DAmageNet's strength) and the shipped weights against it."""
  probe = []
  for e in s.probe_eps:
    probe.append(common.attack_job(
        f"weak/probe/eps{e}", attack_settings(f"{e}/255"), f"{s.data_dir}/train",
        f"{work}/weak/probe/eps{e}", max_images=s.probe_images))
    probe.append(common.evaluate_job(
        f"weak/results_probe/eps{e}", common.EvalSettings(f"{s.data_dir}/train"),
        ROLES.targets, f"{work}/weak/results_probe/eps{e}",
        adversarial_dir=f"{work}/weak/probe/eps{e}", num_samples=0))
  stages = {
      "probe": probe,
      "attack": shared_stages(s, work)["weak_attack"],
      "evaluate": [common.evaluate_job(
          "weak/results_shipped", _test(s), ROLES.targets, f"{work}/weak/results_shipped",
          adversarial_dir=f"{work}/weak/adv_test", sub_model=f"{SHIPPED}/sub",
          super_model=f"{SHIPPED}/super", defenses=ADAPTIVE_DEFENSES,
          max_images=s.eval_images)],
  }
  return Recipe("cifar10_weak", "the eps 8/255 transfer set and the shipped weights on it",
                s, stages, ("attack", "evaluate"))


def shipped_recipe(s: Settings, work: str) -> Recipe:
  """The shipped weights: every evaluation of docs/results.md's CIFAR-10 tables."""
  stages = shared_stages(s, work)
  del stages["records"]
  stages.update(evaluation_stages(s, work, "shipped", f"{SHIPPED}/sub", f"{SHIPPED}/super",
                                  f"{work}/shipped"))
  return Recipe("cifar10_shipped", "the shipped weights (weights/cifar10/cdgan) evaluated",
                s, stages, ("attack", "weak_attack", "full", "compare", "adaptive"))


def recipes() -> Dict[str, tuple]:
  """name -> (description, factory(settings, work) -> Recipe, default Settings)."""
  table = {
      "cifar10_weak": ("the eps 8/255 transfer set; the shipped weights on it",
                       weak_recipe, Settings()),
      "cifar10_shipped": ("the shipped weights evaluated (transfer, weak, adaptive)",
                          shipped_recipe, Settings()),
  }
  for lever_name, (description, _, changes) in SEARCH.items():
    table[f"cifar10_{lever_name}"] = (
        description, lambda s, w, n=lever_name: search_recipe(n, s, w),
        dataclasses.replace(Settings(), **changes))
  return table


DEFAULT_WORK = "/work/scratch/cifar"
