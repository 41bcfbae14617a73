"""The ImageNet purifier fine-tuned on the attack mix (issue 18), chosen on held-out attacks.

One work folder (default /work/scratch/gen) holds:

  imagenet/               `python -m tfrecords_builder.mix --mix=imagenet`: the attacked
                          PNGs of every image outside the test split (full size),
                          mix_manifest.json, records/{train,val}-* (val: the images of
                          rows.IMAGENET_VAL_FRACTION, never trained on)
  runs/<run>/             the GANs (`run_name`); warm: both generators start from the
                          shipped 256 -> 128 -> 256 ones (weights/imagenet/cdgan_scale2);
                          scratch (scale 1): from random weights
  val_imagenet/           `experiments/generalization/table.py --dataset=imagenet_val`:
                          the records' held-out val-sample images under attacks no
                          training pair used (choosing; never the test split)
  table_imagenet/         the test-split table's attacked PNGs (shared with the 64-px
                          table) and each purifier's evaluations

Stages (`python -m experiments run imagenet_mix_warm [stage...] --work=...`):

  mix          the attack-mix PNGs and records (resumable; packs with the validation
               fraction)
  sub, super   the GANs (super chained on the new sub's outputs)
  val, val_shipped  validation tables of the new and the shipped pair
  test, test_shipped  test-split tables (a stated subset of rows and images)
  ship         copies the run to weights/imagenet/cdgan_mix (scale 2) or
               weights/imagenet/cdgan_scale<scale>

Roles as in experiments/recipes/imagenet.py: targets MobileNet-v2 1.0, v1 0.5 and v1
0.25; the mix's surrogate MobileNet-v1 0.75; feature network (loss and the mix's
label-free attack) the MobileNet-v1 1.0 embedding extractor.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

from experiments.generalization import rows
from experiments.recipes import common
from experiments.recipes import imagenet
from experiments.recipes.cifar10_mix import table_job
from experiments.runner import Job, Recipe, RecipeError

DEFAULT_WORK = "/work/scratch/gen"
SHIPPED = "weights/imagenet/cdgan_scale2"
# The shipped pair a warm start of each scale begins from (same sizes: 8 x 32, 256 px).
SHIPPED_BY_SCALE = {2: SHIPPED, 4: "weights/imagenet/cdgan"}
FEATURES = ("../shared/models/tflite/"
            "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
# The test rows of the subset table: the mix member nearest the shipped transfer set and
# every held-out row (rows.IMAGENET_ROWS).
TEST_ROWS = ("mifgsm_di 8 v1_0.75", "pgd 8 v1_0.25", "mifgsm_di 8 v1_0.5+v1_0.25",
             "pgd_l2 3.0 v1_0.75", "mifgsm_di 1 v1_0.75", "mifgsm_di 24 v1_0.75")


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the recipe may change (`--set key=value`).

  Attributes:
    sub_steps / super_steps: Fine-tuning steps of each GAN (the shipped pair had
      2,000 + 1,500 on the 9/255 transfer set).
    warmup_steps: Content-only steps at the start of each (the discriminator is new).
    learning_rate: Adam learning rate (the shipped run's default: 1e-4).
    feature_weight: Feature loss weight on the embedding network (shipped: 0.2).
    min_scale: Training crops: random square windows of relative side U(min_scale, 1)
      of the full-size photos.
    val_images / test_images: Images of the validation / test tables.
    test_rows: The test table's rows (names in rows.IMAGENET_ROWS).
    tag: Appended to the run folder.
    with_transfer: Also train on the shipped pair's own transfer pairs (MI-FGSM 9/255,
      40 steps, input diversity 1.0 on MobileNet-v1 0.75, DAmageNet crop) of the 1,000
      class samples (the `transfer` stage; the val-sample images stay out, so the
      validation table's images are never trained on). The CIFAR-10 lesson: the mix
      alone loses on strong transfer attacks, the mix plus these pairs did not.
    scale: Large / small ratio of the chain (2: 256 -> 128 -> 256; 1: two 256 -> 256
      denoisers, no bottleneck: the far end of the trade-off).
    warm: Start both generators from the shipped pair of the same scale (2:
      `imagenet-128`, 4: `imagenet-64`, `SHIPPED_BY_SCALE`) instead of random weights
      (with the image skip, random weights start as plain resizing, which at scale 1
      is the identity).
    transfer_share: With with_transfer: the share of the training draws taken from
      the transfer pairs (`--train_shares`; the CIFAR-10 recipe that held had 38 %);
      0: every record equally often (the transfer pairs are then 948 of 6,168
      records, about 15 %).
  """
  sub_steps: int = 600
  super_steps: int = 500
  warmup_steps: int = 100
  learning_rate: float = 5e-5
  feature_weight: float = 0.2
  min_scale: float = 0.8
  val_images: int = 1000
  test_images: int = 100
  test_rows: Tuple[str, ...] = TEST_ROWS
  tag: str = ""
  with_transfer: bool = False
  scale: int = 2
  warm: bool = True
  transfer_share: float = 0.0


def run_name(s: Settings) -> str:
  """imagenet_warm / imagenet_scratch, _s<scale> unless 2, _transfer[<share %>], then
  the tag."""
  share = f"{round(100 * s.transfer_share)}" if s.with_transfer and s.transfer_share else ""
  return ("imagenet_" + ("warm" if s.warm else "scratch")
          + ("" if s.scale == 2 else f"_s{s.scale}")
          + (f"_transfer{share}" if s.with_transfer else "") + s.tag)


def train_shares(s: Settings) -> Tuple[float, ...]:
  """(mix share, transfer share) of the training draws, or () for record counts."""
  if not 0.0 <= s.transfer_share < 1.0:
    raise RecipeError(f"transfer_share={s.transfer_share} must be in [0, 1)")
  if s.transfer_share and not s.with_transfer:
    raise RecipeError("transfer_share needs with_transfer=True")
  if not s.transfer_share:
    return ()
  return (round(1.0 - s.transfer_share, 6), s.transfer_share)


def ship_destination(s: Settings) -> str:
  """weights/imagenet/cdgan_mix for the scale-2 fine-tune, else one folder per scale."""
  return "weights/imagenet/" + ("cdgan_mix" if s.scale == 2 else f"cdgan_scale{s.scale}")


def gan_settings(s: Settings, role: str) -> common.GanSettings:
  """The shipped sizes (8 blocks, 32 filters) at 256 px, at `s.scale`; warm from the
  shipped pair of that scale or from random weights."""
  if s.warm and s.scale not in SHIPPED_BY_SCALE:
    raise RecipeError(f"warm=True needs a scale with shipped generators "
                      f"({sorted(SHIPPED_BY_SCALE)}), not {s.scale}")
  steps = s.sub_steps if role == "sub" else s.super_steps
  return common.GanSettings(
      image_size=256, scale=s.scale, batch_size=8, train_steps=steps,
      warmup_steps=s.warmup_steps, num_res_blocks=8, filters=32, discriminator_filters=16,
      image_skip=True, learning_rate=s.learning_rate, content_loss="l1",
      adversarial_weight=1e-4, feature_extractor=FEATURES, feature_weight=s.feature_weight,
      augment_min_scale=s.min_scale, summary_every=50, checkpoint_every=100,
      eval_every=100, eval_steps=10, seed=0,
      init_generator=f"{SHIPPED_BY_SCALE[s.scale]}/{role}" if s.warm else None)


def transfer_jobs(work: str) -> list:
  """The class samples' transfer pairs, as the shipped pair's `imagenet_transfer` made
  them (same attack, seed and crop: the same bytes), and their records."""
  paths = imagenet._Paths(imagenet.Settings())  # pylint: disable=protected-access
  adv = f"{work}/imagenet_transfer/adv_class"
  return [common.attack_job("transfer/adv_class", imagenet.attack_settings(
      paths.surrogate, "9/255", 40, 1.0), paths.cls, adv, labels=paths.cls_labels),
          common.records_job("transfer/records_class", adv, paths.cls,
                             f"{work}/imagenet_transfer/records_class",
                             labels=paths.cls_labels, crop="damagenet")]


def recipe(s: Settings, work: str, name: str = "imagenet_mix_warm") -> Recipe:
  run = run_name(s)
  runs, records = f"{work}/runs/{run}", f"{work}/imagenet/records"
  more = (f"{work}/imagenet_transfer/records_class",) if s.with_transfer else ()
  shares = train_shares(s)
  sub, sup = f"{runs}/sub", f"{runs}/super"
  val, test = f"{work}/val_imagenet", f"{work}/table_imagenet"
  test_flags = {"rows": tuple(s.test_rows)}

  def test_job(job_name, tag, sub_model="", super_model="", defenses=("cdgan",)):
    job = table_job(job_name, "imagenet", test, s.test_images, tag, f"{test}/{tag}",
                    sub_model, super_model, defenses)
    return dataclasses.replace(job, flags={**job.flags, **test_flags})

  stages: Dict[str, list] = {
      "mix": [Job("mix/imagenet", "-m tfrecords_builder.mix",
                  {"mix": "imagenet", "output_dir": f"{work}/imagenet",
                   "shared_dir": "../shared", "batch_size": 16,
                   "val_fraction": rows.IMAGENET_VAL_FRACTION}, nice=10)],
      "sub": [dataclasses.replace(common.train_job(
          f"{run}/sub", "sub", gan_settings(s, "sub"), records, sub, more_records=more,
          shares=shares),
                                  nice=10)],
      "super": [dataclasses.replace(common.train_job(
          f"{run}/super", "super", gan_settings(s, "super"), records, sup, sub_model=sub,
          more_records=more, shares=shares), nice=10)],
      "val": [table_job(f"{run}/val", "imagenet_val", val, s.val_images, run,
                        f"{val}/{run}", sub, sup)],
      "val_shipped": [table_job("imagenet_shipped128/val", "imagenet_val", val,
                                s.val_images, "shipped128", f"{val}/shipped128",
                                defenses=rows.DEFENSES)],
      "test_shipped": [test_job("imagenet_shipped128/test", "shipped128",
                                defenses=("cdgan", "resize"))],
      "test": [test_job(f"{run}/test", run, sub, sup)],
      "ship": [common.ship_job(f"{run}/ship", runs, ship_destination(s))],
  }
  defaults = ("mix", "sub", "super", "val", "val_shipped")
  if s.with_transfer:
    stages = {"mix": stages.pop("mix"), "transfer": transfer_jobs(work), **stages}
    defaults = ("mix", "transfer") + defaults[1:]
  return Recipe(name, RECIPES[name][0], s, stages, defaults)


RECIPES = {
    "imagenet_mix_warm": (
        "the shipped 256 -> 128 -> 256 GANs fine-tuned on the imagenet attack mix",
        Settings()),
    "imagenet_mix_transfer_warm": (
        "the shipped 256 -> 128 -> 256 GANs fine-tuned on the imagenet attack mix + the "
        "class samples' MI-FGSM 9/255 transfer pairs",
        Settings(with_transfer=True)),
    "imagenet_mix_transfer40_warm": (
        "the shipped 256 -> 128 -> 256 GANs fine-tuned on the imagenet attack mix (60 % "
        "of the draws) + the class samples' MI-FGSM 9/255 transfer pairs (40 %)",
        Settings(with_transfer=True, transfer_share=0.4)),
    "imagenet_mix_transfer40_warm_s4": (
        "the shipped paper-geometry 256 -> 64 -> 256 GANs fine-tuned on the imagenet "
        "attack mix (60 % of the draws) + the class samples' transfer pairs (40 %)",
        Settings(with_transfer=True, transfer_share=0.4, scale=4)),
    "imagenet_mix_transfer_s1": (
        "scale 1 (two 256 -> 256 denoisers, no bottleneck) from random weights on the "
        "imagenet attack mix + the class samples' MI-FGSM 9/255 transfer pairs",
        Settings(with_transfer=True, warm=False, scale=1, sub_steps=400, super_steps=400,
                 warmup_steps=200, learning_rate=1e-4)),
}


def recipes() -> Dict[str, tuple]:
  """name -> (description, factory(settings, work) -> Recipe, default Settings)."""
  return common.named_recipes(RECIPES, recipe)
