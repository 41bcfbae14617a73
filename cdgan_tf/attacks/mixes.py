"""Named attack mixes: the declared recipe of a diverse training set for CD-GAN.

A purifier generalises to attacks it never saw when its training pairs come from many
attacks (HGD: no-op, noise, FGSM and iterative attacks on several models) and from
label-free feature distortion (NRP). A mix declares that recipe as data, so the pair
generator (`python -m tfrecords_builder.mix --mix=NAME`), experiment recipes and the
manifests all name the same thing:

  AttackMix      name, image sources, versions per image, attacks
  MixAttack      one member: kind, share of the versions, budget range (whole 1/255
                 steps, inclusive), surrogate choices (each an ensemble of classifier
                 specs), steps / decay / input diversity, feature network
  ImageSource    a folder of clean images (flat + label file, or class folders), with
                 the test split left out by the same function that chooses it
                 (`folders.select_subset(keys, exclude_test_subset)`, what
                 `evaluate.py --max_images=N` scores and `tfrecords_builder
                 --holdout_subset=N` leaves out)

Specs may hold "{shared}" (the shared data folder, `../shared`) and "{weights}" (the
repo's weights/ folder); `resolve_spec` fills them in.

Each (image, version) draws its attack, surrogate choice and budget from a stable hash
of (seed, image key, version) (`draw`), so the assignment never depends on the order,
the batch or which other images are in the run.

Roles (fixed, as in experiments/*): a mix never attacks through a target classifier.
  ImageNet targets: MobileNet-v2 1.0, MobileNet-v1 0.5 160, MobileNet-v1 0.25 128 (TFLite);
    gradient surrogate: MobileNet-v1 0.75 192; feature network: the MobileNet-v1 1.0
    embedding extractor.
  CIFAR-10 targets: resnet_v2, inception, mobilenet_v2 (weights/cifar10); gradient
    surrogate: vgg_surrogate; feature network: densenet_feature.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Dict, Optional, Tuple

from cdgan_tf.common import errors

KINDS = ("clean", "uniform", "gaussian", "fgsm", "pgd", "mifgsm", "feature")
LABEL_FREE = ("clean", "uniform", "gaussian", "feature")
GRADIENT = ("fgsm", "pgd", "mifgsm")


@dataclasses.dataclass(frozen=True)
class MixAttack:
  """One attack of a mix.

  Attributes:
    name: Unique in the mix; written to each record's `attack/name`.
    kind: clean | uniform | gaussian | fgsm | pgd | mifgsm | feature.
    share: Relative weight of this attack among the versions (normalised over the mix).
    eps_255: (low, high) budget range in whole 1/255 steps, inclusive; (0, 0) for clean.
    surrogates: Gradient kinds: the choices of surrogate, each a tuple of classifier
      specs (several = an ensemble); one choice is drawn per version.
    steps: Iterations (pgd, mifgsm, feature).
    decay: MI-FGSM momentum decay.
    diversity_prob: MI-FGSM input-diversity probability.
    feature_network: kind "feature": the feature network spec
      (`classifiers.load_feature_extractor`).
    feature_layer: kind "feature": its layer ("" = its output).
  """
  name: str
  kind: str
  share: float
  eps_255: Tuple[int, int] = (0, 0)
  surrogates: Tuple[Tuple[str, ...], ...] = ()
  steps: int = 10
  decay: float = 1.0
  diversity_prob: float = 0.0
  feature_network: str = ""
  feature_layer: str = ""

  def __post_init__(self):
    if self.kind not in KINDS:
      raise errors.UsageError(f"mix attack {self.name!r}: kind={self.kind!r} is not one of "
                              f"{', '.join(KINDS)}")
    if not self.share > 0:
      raise errors.UsageError(f"mix attack {self.name!r}: share={self.share} must be > 0")
    low, high = self.eps_255
    if not 0 <= low <= high <= 255:
      raise errors.UsageError(f"mix attack {self.name!r}: eps_255={self.eps_255} must be "
                              "0 <= low <= high <= 255")
    if (self.kind == "clean") != (high == 0):
      raise errors.UsageError(f"mix attack {self.name!r}: only kind 'clean' has budget 0")
    if (self.kind in GRADIENT) != bool(self.surrogates):
      raise errors.UsageError(f"mix attack {self.name!r}: gradient kinds and only they take "
                              "surrogates")
    if (self.kind == "feature") != bool(self.feature_network):
      raise errors.UsageError(f"mix attack {self.name!r}: kind 'feature' and only it takes a "
                              "feature_network")
    if self.steps < 1:
      raise errors.UsageError(f"mix attack {self.name!r}: steps={self.steps} must be >= 1")

  @property
  def label_free(self) -> bool:
    return self.kind in LABEL_FREE


@dataclasses.dataclass(frozen=True)
class ImageSource:
  """A folder of clean training images.

  Attributes:
    name: Prefix of the image keys ("<name>/<key>"), unique in the mix.
    clean_dir: Flat folder (with `labels`) or class-folder root.
    labels: Label file of a flat folder; None for class folders.
    exclude_test_subset: Leave out `folders.select_subset(keys, N)`, the test split
      that `evaluate.py --max_images=N` scores on this folder; 0: none.
    max_images: Then keep `folders.select_subset(remaining keys, M)`; 0: all.
  """
  name: str
  clean_dir: str
  labels: Optional[str] = None
  exclude_test_subset: int = 0
  max_images: int = 0


@dataclasses.dataclass(frozen=True)
class AttackMix:
  """A named mix: where the images come from and how each version is attacked."""
  name: str
  description: str
  sources: Tuple[ImageSource, ...]
  attacks: Tuple[MixAttack, ...]
  versions_per_image: int = 4

  def __post_init__(self):
    names = [a.name for a in self.attacks]
    if not names or len(set(names)) != len(names):
      raise errors.UsageError(f"mix {self.name!r}: attack names must be unique and non-empty, "
                              f"got {names}")
    sources = [s.name for s in self.sources]
    if not sources or len(set(sources)) != len(sources):
      raise errors.UsageError(f"mix {self.name!r}: source names must be unique, got {sources}")
    if self.versions_per_image < 1:
      raise errors.UsageError(f"mix {self.name!r}: versions_per_image must be >= 1")

  def shares(self) -> Dict[str, float]:
    """{attack name: normalised share}, summing to 1."""
    total = sum(a.share for a in self.attacks)
    return {a.name: a.share / total for a in self.attacks}

  def record(self) -> dict:
    """The mix as JSON data (tuples as lists), as manifests and sidecars hold it."""
    return json.loads(json.dumps(dataclasses.asdict(self)))


def _unit(seed: int, key: str, version: int, salt: str) -> float:
  digest = hashlib.sha256(f"{seed}/{key}/{version}/{salt}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def draw(mix: AttackMix, key: str, version: int, seed: int = 0
         ) -> Tuple[MixAttack, int, int]:
  """The attack, budget (in 1/255) and surrogate choice of one (image, version).

  A stable hash of (seed, key, version): the same in every run and independent of the
  other images. Attacks are drawn by their shares, the budget uniformly among the whole
  1/255 steps of the attack's range, the surrogate choice uniformly.

  Returns:
    (attack, eps_255, surrogate choice index; 0 for kinds without surrogates).
  """
  u = _unit(seed, key, version, "attack")
  cumulative, chosen = 0.0, mix.attacks[-1]
  for attack in mix.attacks:
    cumulative += mix.shares()[attack.name]
    if u < cumulative:
      chosen = attack
      break
  low, high = chosen.eps_255
  eps = low + min(int(_unit(seed, key, version, "eps") * (high - low + 1)), high - low)
  choice = 0
  if chosen.surrogates:
    n = len(chosen.surrogates)
    choice = min(int(_unit(seed, key, version, "surrogate") * n), n - 1)
  return chosen, eps, choice


def resolve_spec(spec: str, shared_dir: str, weights_dir: str) -> str:
  """Fills "{shared}" and "{weights}" into a classifier or folder spec."""
  return spec.replace("{shared}", str(shared_dir)).replace("{weights}", str(weights_dir))


def default_weights_dir() -> str:
  """The repo's weights/ folder (next to the cdgan_tf package)."""
  return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))), "weights")


_TFLITE = "{shared}/models/tflite"
_IMAGENET_SURROGATES = ((f"{_TFLITE}/mobilenet_v1_0.75_192_quant.tflite",),)
_IMAGENET_FEATURES = f"{_TFLITE}/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
_CIFAR_SURROGATES = (("{weights}/cifar10/vgg_surrogate.keras",),)
_CIFAR_FEATURES = "{weights}/cifar10/densenet_feature.keras"
_CIFAR_FEATURE_LAYER = "densenet_feature_final_relu"  # [N, 8, 8, 120], before the pool.
IMAGENET_TEST_IMAGES = 650  # experiments/imagenet: the test split of the 1,300 val images.


def _standard_attacks(surrogates, feature_network, steps: int, feature_layer: str = ""
                      ) -> Tuple[MixAttack, ...]:
  return (
      MixAttack("clean", "clean", 0.10),
      MixAttack("uniform", "uniform", 0.10, (2, 16)),
      MixAttack("gaussian", "gaussian", 0.10, (2, 16)),
      MixAttack("fgsm", "fgsm", 0.15, (2, 16), surrogates),
      MixAttack("pgd", "pgd", 0.15, (2, 16), surrogates, steps=steps),
      MixAttack("mifgsm_di", "mifgsm", 0.20, (2, 16), surrogates, steps=steps,
                decay=1.0, diversity_prob=0.7),
      MixAttack("feature", "feature", 0.20, (2, 16), steps=steps,
                feature_network=feature_network, feature_layer=feature_layer),
  )


MIXES: Dict[str, AttackMix] = {
    "imagenet": AttackMix(
        name="imagenet",
        description="Every ImageNet image in ../shared outside the test split, full "
                    "size: the 650 val-sample images outside select_subset(val, 650), "
                    "the 1,000 class samples and the DAmageNet demo original; 4 versions "
                    "each from clean, noise, FGSM / PGD / MI-FGSM-DI on MobileNet-v1 "
                    "0.75 and feature distortion on the MobileNet-v1 1.0 embedding.",
        sources=(
            ImageSource("val", "{shared}/datasets/imagenet_val_sample",
                        "{shared}/datasets/imagenet_val_sample/val.txt",
                        exclude_test_subset=IMAGENET_TEST_IMAGES),
            ImageSource("class", "{shared}/datasets/imagenet_class_samples",
                        "{shared}/datasets/imagenet_class_samples/labels.txt"),
            ImageSource("demo", "{shared}/datasets/damagenet_demo/ILSVRC2012_img_val",
                        "{shared}/datasets/imagenet_val_sample/val.txt"),
        ),
        attacks=_standard_attacks(_IMAGENET_SURROGATES, _IMAGENET_FEATURES, steps=10),
        versions_per_image=4),
    "cifar10": AttackMix(
        name="cifar10",
        description="4,000 CIFAR-10 train images (select_subset of train/), 4 versions "
                    "each from clean, noise, FGSM / PGD / MI-FGSM-DI on vgg_surrogate "
                    "and feature distortion on densenet_feature's last feature map "
                    "(neither a target nor the surrogate).",
        sources=(ImageSource("train", "{shared}/datasets/cifar10/train",
                             max_images=4000),),
        attacks=_standard_attacks(_CIFAR_SURROGATES, _CIFAR_FEATURES, steps=10,
                                  feature_layer=_CIFAR_FEATURE_LAYER),
        versions_per_image=4),
}


def get_mix(name: str) -> AttackMix:
  """The mix called `name`.

  Raises:
    ValueError: unknown name, listing the known ones.
  """
  if name not in MIXES:
    raise errors.UsageError(f"unknown attack mix {name!r}; known mixes: {', '.join(sorted(MIXES))}")
  return MIXES[name]
