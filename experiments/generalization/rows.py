"""The rows, targets and defenses of the generalization table (no flags: importable).

See table.py. A row's attack never scores a target it used as a surrogate.
"""

import dataclasses
from typing import Tuple

W = "weights/cifar10"
CIFAR_TARGETS = {"resnet_v2": f"{W}/resnet_v2.keras", "mobilenet_v2": f"{W}/mobilenet_v2.keras",
                 "inception": f"{W}/inception.keras"}
VGG = (f"{W}/vgg_surrogate.keras",)
DENSENET = (f"{W}/densenet_feature.keras",)
DEFENSES = ("cdgan", "resize", "jpeg75", "median3")


@dataclasses.dataclass(frozen=True)
class Row:
  """One attack row: `kind` as in mixes.KINDS, or "pgd_l2" (eps = L2 norm on [0, 1])."""
  name: str
  kind: str
  eps: float  # L-inf in 1/255 units; pgd_l2: the L2 norm on the [0, 1] scale.
  held_out: str = ""  # Why it is held out ("" = a training-mix member).
  surrogates: Tuple[str, ...] = ()
  steps: int = 10
  diversity_prob: float = 0.0
  feature_network: str = ""
  feature_layer: str = ""


CIFAR_ROWS = (
    Row("uniform 8", "uniform", 8),
    Row("gaussian 8", "gaussian", 8),
    Row("fgsm 8 vgg", "fgsm", 8, surrogates=VGG),
    Row("pgd 8 vgg", "pgd", 8, surrogates=VGG),
    Row("mifgsm_di 8 vgg", "mifgsm", 8, surrogates=VGG, diversity_prob=0.7),
    Row("feature 8 densenet", "feature", 8, feature_network=f"{W}/densenet_feature.keras",
        feature_layer="densenet_feature_final_relu"),
    Row("pgd 8 resnet_v2", "pgd", 8, "surrogate no training pair used",
        surrogates=(CIFAR_TARGETS["resnet_v2"],)),
    Row("mifgsm_di 8 inception+mobilenet_v2", "mifgsm", 8, "ensemble no training pair used",
        surrogates=(CIFAR_TARGETS["inception"], CIFAR_TARGETS["mobilenet_v2"]),
        diversity_prob=0.7),
    Row("pgd_l2 1.0 vgg", "pgd_l2", 1.0, "algorithm not in the mix (L2 ball)",
        surrogates=VGG),
    Row("mifgsm_di 1 vgg", "mifgsm", 1, "weaker budget than the mix's 2-16",
        surrogates=VGG, diversity_prob=0.7),
    Row("mifgsm_di 24 vgg", "mifgsm", 24, "stronger budget than the mix's 2-16",
        surrogates=VGG, diversity_prob=0.7),
)
# The held-out-attack VALIDATION split (choosing between purifiers; never the test split):
# CIFAR-10 train images outside the cifar10 mix's 4,000 and the shipped GANs' 10,000, attacked by what no training pair
# used: an algorithm outside the mix and an ensemble of the two non-target networks.
CIFAR_VAL_ROWS = (
    Row("val pgd_l2 1.0 vgg+densenet", "pgd_l2", 1.0, "validation: L2 ball, new ensemble",
        surrogates=VGG + DENSENET),
    Row("val mifgsm_di 8 vgg+densenet", "mifgsm", 8, "validation: new ensemble",
        surrogates=VGG + DENSENET, diversity_prob=0.7),
)
# ImageNet (real quantized TFLite MobileNets from ../shared). The mix attacks through
# MobileNet-v1 0.75 (surrogate) and the MobileNet-v1 1.0 embedding (feature network); the
# targets are the other three. Held-out rows attack through targets, so each scores only
# the targets it did not use.
T = "{shared}/models/tflite"
IMAGENET_TARGETS = {"mobilenet_v2": f"{T}/mobilenet_v2_1.0_224_quant.tflite",
                    "mobilenet_v1_0.5": f"{T}/mobilenet_v1_0.5_160_quant.tflite",
                    "mobilenet_v1_0.25": f"{T}/mobilenet_v1_0.25_128_quant.tflite"}
V1_075 = (f"{T}/mobilenet_v1_0.75_192_quant.tflite",)
IMAGENET_ROWS = (
    Row("uniform 8", "uniform", 8),
    Row("gaussian 8", "gaussian", 8),
    Row("fgsm 8 v1_0.75", "fgsm", 8, surrogates=V1_075),
    Row("pgd 8 v1_0.75", "pgd", 8, surrogates=V1_075),
    Row("mifgsm_di 8 v1_0.75", "mifgsm", 8, surrogates=V1_075, diversity_prob=0.7),
    Row("feature 8 v1_1.0 embedding", "feature", 8,
        feature_network=f"{T}/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"),
    Row("pgd 8 v1_0.25", "pgd", 8, "surrogate no training pair used",
        surrogates=(IMAGENET_TARGETS["mobilenet_v1_0.25"],)),
    Row("mifgsm_di 8 v1_0.5+v1_0.25", "mifgsm", 8, "ensemble no training pair used",
        surrogates=(IMAGENET_TARGETS["mobilenet_v1_0.5"],
                    IMAGENET_TARGETS["mobilenet_v1_0.25"]), diversity_prob=0.7),
    Row("pgd_l2 3.0 v1_0.75", "pgd_l2", 3.0, "algorithm not in the mix (L2 ball)",
        surrogates=V1_075),
    Row("mifgsm_di 1 v1_0.75", "mifgsm", 1, "weaker budget than the mix's 2-16",
        surrogates=V1_075, diversity_prob=0.7),
    Row("mifgsm_di 24 v1_0.75", "mifgsm", 24, "stronger budget than the mix's 2-16",
        surrogates=V1_075, diversity_prob=0.7),
)
# The held-out-attack VALIDATION split for ImageNet: the imagenet mix uses every image
# outside the test split, so validation takes the val-sample images its records hold out
# (IMAGENET_VAL_FRACTION, packed with --val_fraction of the same value) and attacks
# that no training pair used: the L2 ball at another budget than the test row's, and the
# shipped transfer set's recipe (40 steps, input diversity on every step).
IMAGENET_VAL_FRACTION = 0.2
IMAGENET_VAL_ROWS = (
    Row("val pgd_l2 2.0 v1_0.75", "pgd_l2", 2.0, "validation: L2 ball, another budget",
        surrogates=V1_075),
    Row("val mifgsm_di 10 v1_0.75 40 steps", "mifgsm", 10,
        "validation: 40 steps, diversity 1.0", surrogates=V1_075, steps=40,
        diversity_prob=1.0),
)
_IMAGENET_EVAL = ("--labels={shared}/datasets/imagenet_val_sample/val.txt",
                  "--crop=damagenet", "--center_crop=1.0", "--batch_size=32")
DATASETS = {"cifar10": dict(rows=CIFAR_ROWS, targets=CIFAR_TARGETS,
                            clean_dir="{shared}/datasets/cifar10/test", labels=None,
                            sub=f"{W}/cdgan/sub", super=f"{W}/cdgan/super"),
            "cifar10_val": dict(rows=CIFAR_VAL_ROWS, targets=CIFAR_TARGETS,
                                clean_dir="{shared}/datasets/cifar10/train", labels=None,
                                # The shipped GANs' pairs: select_subset(train, 10000)
                                # (run_cdgan.sh TRAIN_IMAGES), a superset of the mix's.
                                exclude_mix="cifar10", exclude_subset=10000,
                                sub=f"{W}/cdgan/sub", super=f"{W}/cdgan/super"),
            # The 650-image test split (`select_subset(val, 650)`, as evaluate.py
            # --max_images=650 and the imagenet mix's exclude_test_subset), each image
            # prepared with DAmageNet's crop (224x224) before the attack, as the
            # transfer set was.
            "imagenet": dict(rows=IMAGENET_ROWS, targets=IMAGENET_TARGETS,
                             clean_dir="{shared}/datasets/imagenet_val_sample",
                             labels="{shared}/datasets/imagenet_val_sample/val.txt",
                             crop="damagenet", evaluate_flags=_IMAGENET_EVAL,
                             sub="weights/imagenet/cdgan_scale2/sub",
                             super="weights/imagenet/cdgan_scale2/super"),
            "imagenet_val": dict(rows=IMAGENET_VAL_ROWS, targets=IMAGENET_TARGETS,
                                 clean_dir="{shared}/datasets/imagenet_val_sample",
                                 labels="{shared}/datasets/imagenet_val_sample/val.txt",
                                 mix_val=("imagenet", "val", IMAGENET_VAL_FRACTION),
                                 crop="damagenet", evaluate_flags=_IMAGENET_EVAL,
                                 sub="weights/imagenet/cdgan_scale2/sub",
                                 super="weights/imagenet/cdgan_scale2/super")}


def slug(name: str) -> str:
  """A row's folder name in a table's work folder: "pgd 8 v1_0.25" -> "pgd_8_v1_0_25"."""
  return "".join(c if c.isalnum() else "_" for c in name)


def markdown(table: dict) -> str:
  """The table as Markdown: one line per (row, target), attacked / clean top-1 in %."""
  head = ["attack", "held out because", "RMSD", "target", "normal", "no defense"] + [
      f"{d} (att / clean)" for d in table["defenses"]]
  split = "validation" if table["dataset"].endswith("_val") else "test"
  lines = [f"{table['dataset']}: top-1 (%) of each target on {table['images']} {split} "
           "images; a target is never scored on an attack that used it as surrogate.", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for entry in table["rows"]:
    row = entry["row"]
    for target, t in entry["targets"].items():
      cells = [row["name"], row["held_out"] or "(training mix)",
               f"{entry['perturbation']['rmsd_255']:.2f}", target, f"{t['normal']}",
               f"{t['no_defense']}"] + [f"{t[d]} / {t[d + '_clean']}" for d in
                                        table["defenses"]]
      lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"
