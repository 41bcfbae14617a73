"""Runs classifiers, defenses and attacks over a stream of batches.

One pass over the data fills an `evaluation.AccuracyTable` with every combination:
each classifier without defense and behind each defense, on clean images, on the given
(transfer) adversarial images, and under the gradient attacks:

  transfer        the adversarial images that came with the data (the paper's setting)
  pgd_classifier  PGD on the classifier alone; the defense is then put in front
                  (the attacker does not know the defense)
  pgd_defended    white-box PGD through purifier + classifier (the attacker knows
                  everything); only for differentiable defenses
  bpda            PGD with the purifier run forward and treated as the identity
                  backward (Athalye et al. 2018); works for any defense

Purified images are computed once per batch and defense and shared by all classifiers.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from cdgan_tf import attacks
from cdgan_tf import evaluation

TRANSFER = "transfer"
GRADIENT_ATTACKS = ("pgd_classifier", "pgd_defended", "bpda")
ATTACK_NAMES = (TRANSFER,) + GRADIENT_ATTACKS


@dataclasses.dataclass
class Batch:
  """One batch of evaluation data.

  Attributes:
    labels: int64 [N] true labels (-1 when unknown).
    keys: [N] file names or stems.
    clean: float32 [N, H, W, 3] in [0, 1], or None.
    adversarial: float32 [N, H, W, 3] in [0, 1] (transfer attack), or None.
  """
  labels: np.ndarray
  keys: Sequence[str]
  clean: Optional[np.ndarray] = None
  adversarial: Optional[np.ndarray] = None


@dataclasses.dataclass(frozen=True)
class AttackSpec:
  """A gradient attack: its name and PGD parameters (L-inf, random start)."""
  name: str
  eps: float = 8 / 255
  steps: int = 10
  step_size: Optional[float] = None

  def params(self) -> dict:
    return {"eps": self.eps, "steps": self.steps,
            "step_size": self.step_size if self.step_size is not None
            else 2.5 * self.eps / max(self.steps, 1), "norm": "linf"}


def check_attackable(attack_specs: Sequence[AttackSpec], classifiers) -> None:
  """Refuses gradient attacks on forward-only classifiers with a clear message."""
  if not any(s.name in GRADIENT_ATTACKS for s in attack_specs):
    return
  forward_only = [c.name for c in classifiers if not c.differentiable]
  if forward_only:
    raise ValueError(
        f"gradient attacks ({', '.join(s.name for s in attack_specs if s.name != TRANSFER)})"
        f" need differentiable classifiers; forward-only: {', '.join(forward_only)} "
        "(TFLite models have no gradients: use --attack=transfer with them)")


def _predict(classifier, images) -> np.ndarray:
  return tf.argmax(classifier(images), axis=-1).numpy()


class Evaluator:
  """Streams batches through every classifier x defense x attack combination.

  Args:
    classifiers: Adapters with `.name`, `.differentiable` and `__call__(images) ->
      logits [N, 1000]` (cdgan_tf.classifiers).
    defenses: name -> purifier (images [N,H,W,3] in [0,1] -> images in [0,1]) with a
      `.differentiable` attribute; "cdgan" is the primary one.
    attack_specs: Which attacks to run; include AttackSpec("transfer") to score the
      batches' own adversarial images.
    seed: Seed of the attacks' random starts.
    prediction_file: Optional open text file; one CSV row per image and condition
      (key, label, classifier, attack, defense, condition, prediction) is streamed to it.
  """

  def __init__(self, classifiers, defenses: Dict[str, Callable],
               attack_specs: Sequence[AttackSpec] = (AttackSpec(TRANSFER),), seed: int = 0,
               prediction_file=None):
    self.classifiers = list(classifiers)
    self.defenses = dict(defenses)
    self.attack_specs = list(attack_specs)
    for spec in self.attack_specs:
      if spec.name not in ATTACK_NAMES:
        raise ValueError(f"unknown attack {spec.name!r}: use {', '.join(ATTACK_NAMES)}")
    check_attackable(self.attack_specs, self.classifiers)
    self.seed = seed
    primary = self.attack_specs[0].name if self.attack_specs else TRANSFER
    self.table = evaluation.AccuracyTable(primary_attack=primary)
    for spec in self.attack_specs:
      if spec.name != TRANSFER:
        self.table.set_attack_params(spec.name, spec.params())
    self._purify = {name: tf.function(d, reduce_retracing=True)
                    for name, d in self.defenses.items()}
    # Composed targets are built once so the attacks' compiled loops are reused.
    self._defended = {(c.name, d): (lambda x, c=c, p=self._purify[d]: c(p(x)))
                      for c in self.classifiers for d in self.defenses}
    self._bpda = {(c.name, d): (lambda x, c=c, b=attacks.bpda(self._purify[d]): c(b(x)))
                  for c in self.classifiers for d in self.defenses}
    self.images_seen = 0
    self.notes: List[str] = []
    self._keys: Sequence[str] = ()
    self._writer = None
    if prediction_file is not None:
      self._writer = csv.writer(prediction_file)
      self._writer.writerow(["key", "label", "classifier", "attack", "defense", "condition",
                             "prediction"])

  def _add(self, classifier, condition, images, labels, defense=None, attack=None):
    """Classifies `images` and counts the batch (and streams the predictions)."""
    predictions = _predict(classifier, images)
    self.table.add(classifier.name, condition, predictions, labels, defense=defense,
                   attack=attack)
    if self._writer is not None:
      for key, label, prediction in zip(self._keys, labels, predictions):
        self._writer.writerow([key, int(label), classifier.name, attack or "",
                               defense or "", condition, int(prediction)])

  def _score_defenses(self, images, labels, condition: str, attack=None) -> None:
    for name, purify in self._purify.items():
      purified = purify(images)
      for c in self.classifiers:
        self._add(c, condition, purified, labels, defense=name, attack=attack)

  def add_batch(self, batch: Batch) -> None:
    """Scores one batch under every configured condition."""
    labels = np.asarray(batch.labels)
    self._keys = list(batch.keys)
    if batch.clean is not None:
      clean = tf.convert_to_tensor(batch.clean, tf.float32)
      for c in self.classifiers:
        self._add(c, "normal", clean, labels)
      self._score_defenses(clean, labels, "defense_clean")
    for spec in self.attack_specs:
      if spec.name == TRANSFER:
        if batch.adversarial is None:
          continue
        adversarial = tf.convert_to_tensor(batch.adversarial, tf.float32)
        for c in self.classifiers:
          self._add(c, "attack", adversarial, labels, attack=TRANSFER)
        self._score_defenses(adversarial, labels, "defense", attack=TRANSFER)
      elif batch.clean is not None:
        self._gradient_attack(spec, tf.convert_to_tensor(batch.clean, tf.float32), labels)
    self.images_seen += len(labels)

  def _pgd(self, target, images, labels, spec):
    params = spec.params()
    return attacks.pgd(target, images, tf.convert_to_tensor(labels, tf.int64),
                       eps=params["eps"], steps=params["steps"],
                       step_size=params["step_size"], norm="linf", random_start=True,
                       seed=self.seed)

  def _gradient_attack(self, spec: AttackSpec, clean, labels) -> None:
    known = labels >= 0
    if not np.any(known):
      return
    for c in self.classifiers:
      if spec.name == "pgd_classifier":
        adversarial = self._pgd(c, clean, labels, spec)
        self._add(c, "attack", adversarial, labels, attack=spec.name)
        for name, purify in self._purify.items():
          self._add(c, "defense", purify(adversarial), labels, defense=name,
                    attack=spec.name)
        continue
      for name, defense in self.defenses.items():
        if spec.name == "pgd_defended":
          if not getattr(defense, "differentiable", False):
            note = (f"pgd_defended skipped for {name}: not differentiable (see bpda)")
            if note not in self.notes:
              self.notes.append(note)
              logging.warning(note)
            continue
          target = self._defended[(c.name, name)]
        else:
          target = self._bpda[(c.name, name)]
        adversarial = self._pgd(target, clean, labels, spec)
        self._add(c, "defense", self._purify[name](adversarial), labels, defense=name,
                  attack=spec.name)

  def run(self, batches: Iterable[Batch], log_every: int = 10) -> dict:
    """Consumes the stream; returns the results dict (see evaluation.AccuracyTable)."""
    start = time.time()
    for i, batch in enumerate(batches, 1):
      self.add_batch(batch)
      if i % log_every == 0:
        rate = self.images_seen / max(time.time() - start, 1e-9)
        first = self.classifiers[0].name
        logging.info("%d images (%.1f img/s); %s: normal %s attack %s defense %s",
                     self.images_seen, rate, first,
                     *(_fmt(self.table.accuracy(first, k)) for k in
                       ("normal", "attack", "defense")))
    results = self.table.to_dict()
    if self.notes:
      results["notes"] = list(self.notes)
    return results


def _fmt(value) -> str:
  return "-" if value is None else f"{100 * value:.1f}%"


CDGAN_DEFENSES = ("cdgan", "sub_only", "super_only")


def build_defenses(names: Sequence[str], sub_model: str = "", super_model: str = "",
                   purifier_dir: str = "", image_size: Optional[int] = None) -> Dict:
  """Builds the named defenses.

  Args:
    names: "cdgan", "sub_only", "super_only" (need the generators), or any baseline
      name of `baselines.make_baseline` ("resize", "jpeg75", "bits4", "median3", ...).
    sub_model: The sub generator (.keras file or training model_dir).
    super_model: The super generator.
    purifier_dir: An exported purifier SavedModel, used for "cdgan" instead of the
      two generators.
    image_size: The purifier's working size; default: the one recorded with the
      generators (paper: 256). The "resize" baseline uses the same size and scale.

  Returns:
    name -> purifier callable with `.differentiable`, in the order given.
  """
  # Imported here: evaluation without learned defenses needs no generator code.
  from cdgan_tf import baselines  # pylint: disable=import-outside-toplevel
  from cdgan_tf import defense  # pylint: disable=import-outside-toplevel
  from cdgan_tf import export  # pylint: disable=import-outside-toplevel

  defenses, size, scale = {}, image_size or 256, 4
  cdgan = None
  if any(n in CDGAN_DEFENSES for n in names):
    if purifier_dir and not (sub_model or super_model):
      cdgan = export.LoadedPurifier(purifier_dir)
      size = cdgan.image_size
    elif sub_model or super_model:
      cdgan = defense.Purifier.from_files(sub_model, super_model, image_size=image_size)
      size, scale = cdgan.image_size, cdgan.scale
    else:
      raise ValueError(f"defenses {', '.join(n for n in names if n in CDGAN_DEFENSES)} "
                       "need --sub_model and --super_model (or --purifier)")
  for name in names:
    if name == "cdgan":
      defenses[name] = cdgan
    elif name in CDGAN_DEFENSES:
      if not isinstance(cdgan, defense.Purifier):
        raise ValueError(f"defense {name} needs --sub_model/--super_model (not --purifier)")
      defenses[name] = defense.Purifier(cdgan.sub_generator, cdgan.super_generator,
                                        cdgan.image_size, cdgan.scale, mode=name, name=name)
    else:
      defenses[name] = baselines.make_baseline(name, image_size=size, scale=scale)
  return defenses


def sample_columns(batch: Batch, purifier, classifier, count: int):
  """Images and captions for the sample grid of the first batch.

  Returns:
    (columns, titles, captions): columns are float32 arrays [count, H, W, 3]:
    clean | adversarial | after sub G | after super G (those available).
  """
  columns, titles = [], []
  labels = batch.labels[:count]
  inputs = batch.adversarial if batch.adversarial is not None else batch.clean
  for title, images in (("clean", batch.clean), ("adversarial", batch.adversarial)):
    if images is not None:
      columns.append(np.asarray(images[:count]))
      titles.append(title)
  if purifier is not None and hasattr(purifier, "stages"):
    _, small, purified = purifier.stages(inputs[:count])
    columns += [small.numpy(), purified.numpy()]
    src = "adversarial" if batch.adversarial is not None else "clean"
    titles += [f"{src} after sub G", f"{src} after super G"]
  captions = []
  predictions = [_predict(classifier, column) for column in columns]
  for i in range(len(labels)):
    captions.append([f"pred {int(p[i])} (true {int(labels[i])})" for p in predictions])
  return columns, titles, captions
