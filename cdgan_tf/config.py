"""Configuration dataclasses with the CD-GAN paper's defaults.

Every part of the library takes one of these frozen dataclasses instead of reading
global flags; `cdgan_tf.flags` turns absl flags into them for the entry scripts.

The paper (Singh et al., 2023) fixes the resolutions (256x256 adversarial input,
64x64 intermediate, scale 4), the generator family (SRGAN: 16 residual blocks of 64
filters) and the training lengths (sub GAN 20 epochs, super GAN 250 epochs). It does
not give losses, weights or optimiser settings; the defaults for those follow SRGAN
(Ledig et al., 2017): MSE content loss, adversarial weight 1e-3, Adam lr 1e-4, beta1 0.9.

The geometry (image_size, scale) lives in `DataConfig` only and the seed in
`TrainConfig` only; everything that needs them takes them from there. What a run
learns (model, loss, data, train) is kept apart from where and how it runs
(`RuntimeConfig`: model_dir, cadences, strategy, precision), as `official/` does.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Optional, Tuple

from cdgan_tf.common import checks
from cdgan_tf.common import errors


class Role(str, enum.Enum):
  """Which of CD-GAN's two GANs: the sub-resolution or the super-resolution one.

  A `str` enum: `Role("sub") is Role.SUB`, and it serialises to JSON as "sub".
  """
  SUB = "sub"
  SUPER = "super"

  def input_size(self, image_size: int, scale: int) -> int:
    """Side of the generator's input: the large side for SUB, the small one for SUPER."""
    return image_size if self is Role.SUB else image_size // scale

  def output_size(self, image_size: int, scale: int) -> int:
    """Side of the generator's output and of the discriminator's input."""
    return image_size // scale if self is Role.SUB else image_size

  @property
  def paper_epochs(self) -> int:
    """The paper's training length: sub GAN 20 epochs, super GAN 250 epochs."""
    return 20 if self is Role.SUB else 250

  def __str__(self) -> str:
    return self.value


ROLES = tuple(r.value for r in Role)
CONTENT_LOSSES = ("mse", "l1")
ADVERSARIAL_LOSSES = ("non_saturating", "least_squares")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
MIXED_PRECISION_POLICIES = ("none", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Generator and discriminator sizes (the scale is `DataConfig.scale`).

  Attributes:
    num_res_blocks: Residual blocks in each generator (SRGAN: 16).
    filters: Feature maps in the generators' residual trunk (SRGAN: 64).
    discriminator_filters: Feature maps of the discriminator's first conv; doubled at
      each stride-2 stage up to 8x.
    image_skip: Generators output a residual over the bicubic-resized input (they
      start as plain resizing). Not in the paper, which gives no generator details
      beyond the SRGAN family; off by default (see the README's training notes).
  """
  num_res_blocks: int = 16
  filters: int = 64
  discriminator_filters: int = 64
  image_skip: bool = False

  def __post_init__(self):
    if self.num_res_blocks < 0 or self.filters < 1 or self.discriminator_filters < 1:
      raise errors.UsageError(f"invalid model sizes in {self}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Loss kinds and weights of the generator objective.

  generator loss = content_weight * content + adversarial_weight * adversarial
                   + feature_weight * feature (feature only with an extractor given).

  Attributes:
    content_loss: "mse" or "l1" pixel loss.
    adversarial_loss: "non_saturating" or "least_squares".
    content_weight, adversarial_weight, feature_weight: The weights above.
    feature_extractor: Classifier spec of the feature network (any source
      `classifiers.load_classifier` takes: Keras file, SavedModel, TF-Hub handle,
      .tflite via its float rebuild); "" for none. It must be neither an evaluated
      target nor the attack's surrogate.
    feature_layer: Its layer (Keras) or tensor (TFLite) whose outputs are compared;
      "" for its logits.
  """
  content_loss: str = "mse"
  adversarial_loss: str = "non_saturating"
  content_weight: float = 1.0
  adversarial_weight: float = 1e-3
  feature_weight: float = 0.0
  feature_extractor: str = ""
  feature_layer: str = ""

  def __post_init__(self):
    checks.check_choice("content_loss", self.content_loss, CONTENT_LOSSES)
    checks.check_choice("adversarial_loss", self.adversarial_loss, ADVERSARIAL_LOSSES)



def _shares(values, train_pattern: str) -> Tuple[float, ...]:
  """`DataConfig.train_shares` as a tuple of positive floats, one per glob."""
  try:
    shares = tuple(float(v) for v in values)
  except (TypeError, ValueError):
    raise errors.UsageError(f"train_shares={values!r}: expected numbers") from None
  if any(not 0.0 < v < float("inf") for v in shares):
    raise errors.UsageError(f"train_shares={list(shares)}: every share must be > 0")
  globs = len(train_pattern.split(",")) if train_pattern else 0
  if shares and len(shares) != globs:
    raise errors.UsageError(
        f"train_shares has {len(shares)} values for the {globs} globs of "
        f"train_pattern={train_pattern!r}: give one per glob")
  return shares


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the paired records are, the geometry, and how they become batches.

  Attributes:
    train_pattern: Glob of training TFRecord shards.
    val_pattern: Glob of validation shards ("" for none).
    image_size: Side of the large image (paper: 256); the small one is
      image_size // scale.
    scale: Resolution ratio between the large and the small image (paper: 4; a power
      of 2).
    batch_size: Global batch size, split across replicas.
    augment: Paired random crop (from 1.125x) and horizontal flip on training data.
    augment_min_scale: 1.0: the crop above; in (0, 1): the crop window is a random
      square of relative side U(augment_min_scale, 1) of the whole image instead
      (random scale, the same window on both sides), resized to image_size.
    deterministic: Fixed order and augmentation for a given seed (slower input).
    shuffle_buffer: Examples in the shuffle buffer.
    clean_pair_fraction: Share F of every training batch made of (clean -> clean)
      pairs, round(F * batch) of them, so the purifier learns to leave clean images
      alone (0: the paper's adversarial pairs only).
    skip_damaged_shards: Leave out shards that differ from their manifest.json (and
      say how many records were lost) instead of refusing them (`data.shards`).
    train_shares: One positive weight per comma-joined glob of train_pattern, in
      order: the share of training examples drawn from that glob's records
      (normalised, e.g. (0.6, 0.4)); () reads every record equally often, so each
      set's share is its size's.
  """
  train_pattern: str = ""
  val_pattern: str = ""
  image_size: int = 256
  scale: int = 4
  batch_size: int = 16
  augment: bool = True
  deterministic: bool = False
  shuffle_buffer: int = 1024
  clean_pair_fraction: float = 0.0
  skip_damaged_shards: bool = False
  augment_min_scale: float = 1.0
  train_shares: Tuple[float, ...] = ()

  def __post_init__(self):
    checks.check_geometry(self.image_size, self.scale)
    object.__setattr__(self, "train_shares", _shares(self.train_shares, self.train_pattern))
    if not 0.0 < self.augment_min_scale <= 1.0:
      raise errors.UsageError(f"augment_min_scale={self.augment_min_scale} must be in (0, 1]")
    if not 0.0 <= self.clean_pair_fraction <= 1.0:
      raise errors.UsageError(f"clean_pair_fraction={self.clean_pair_fraction} must be in [0, 1]")
    checks.check_positive("batch_size", self.batch_size)

  @property
  def small_size(self) -> int:
    return self.image_size // self.scale


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The experiment's training hyperparameters: how long and how one GAN trains.

  Where the run writes, how often it saves, summarises and evaluates, on which devices
  and in which precision are `RuntimeConfig`'s.

  Attributes:
    role: Role.SUB (large adversarial -> small clean) or Role.SUPER (small -> large);
      "sub" / "super" are accepted and converted.
    epochs: Passes over the training split (paper: sub 20, super 250); used when
      train_steps is not set.
    train_steps: Total optimiser steps; overrides epochs when set.
    learning_rate: Adam learning rate of both networks.
    beta_1: Adam beta1 of both networks.
    warmup_steps: Initial steps that train the generator on the content loss only
      (the discriminator is not updated).
    seed: Seed of the weights' initialisation, the data order and the augmentation.
    sub_model: Super role only: a trained sub generator (file, export folder or
      model_dir). The super GAN then trains on that generator's outputs, what it
      receives in the chain, instead of a bicubic downscale ("" for the paper's way).
    init_generator: An exported generator (file, export folder or model_dir) whose
      weights the generator starts from when the run starts at step 0 (a warm start,
      `training.warm_start`); a resumed run restores its own checkpoint instead. ""
      for a random initialisation.
  """
  role: Role = Role.SUB
  epochs: int = 20
  train_steps: Optional[int] = None
  learning_rate: float = 1e-4
  beta_1: float = 0.9
  warmup_steps: int = 0
  seed: int = 0
  sub_model: str = ""
  init_generator: str = ""

  def __post_init__(self):
    checks.check_choice("role", str(self.role), ROLES)
    object.__setattr__(self, "role", Role(self.role))
    if self.sub_model and self.role is not Role.SUPER:
      raise errors.UsageError("sub_model (chained training) is for the super GAN only")
    if self.train_steps is not None and self.train_steps < 0:
      raise errors.UsageError(f"train_steps={self.train_steps} must not be negative")


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
  """Where and how a run executes, apart from what it learns (`official`'s RuntimeConfig).

  Attributes:
    model_dir: Checkpoints, TensorBoard logs (train/, eval/) and the exported
      generator (export/generator.keras); "" where nothing is written (a bare
      `GanStep`, a benchmark).
    steps_per_loop: Steps inside one tf.function call between eager bookkeeping.
    checkpoint_every: Steps between checkpoints (and at the end).
    summary_every: Steps between TensorBoard scalar summaries and console lines.
    eval_every: Steps between validation passes (0: only at the end).
    eval_steps: Validation batches per pass (0: the whole split).
    strategy: default | mirrored | multi_worker | tpu.
    tpu: TPU address for the tpu strategy ("" for the local/auto one).
    mixed_precision: none | mixed_float16 | mixed_bfloat16 (part of the checkpoint:
      mixed_float16 adds a loss scale).
  """
  model_dir: str = ""
  steps_per_loop: int = 10
  checkpoint_every: int = 1000
  summary_every: int = 100
  eval_every: int = 1000
  eval_steps: int = 0
  strategy: str = "default"
  tpu: str = ""
  mixed_precision: str = "none"

  def __post_init__(self):
    checks.check_choice("strategy", self.strategy, STRATEGIES)
    checks.check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION_POLICIES)
    for name in ("steps_per_loop", "checkpoint_every", "summary_every"):
      checks.check_positive(name, getattr(self, name))
    for name in ("eval_every", "eval_steps"):
      if getattr(self, name) < 0:
        raise errors.UsageError(f"{name}={getattr(self, name)} must not be negative")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Everything one training run needs: the experiment (model, loss, data, train) and
  its runtime (`RuntimeConfig`: paths, cadences, devices, precision)."""
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  loss: LossConfig = dataclasses.field(default_factory=LossConfig)
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

  @property
  def role(self) -> Role:
    return self.train.role

  @property
  def input_size(self) -> int:
    """Side of the generator's input for this run's role."""
    return self.role.input_size(self.data.image_size, self.data.scale)

  @property
  def output_size(self) -> int:
    """Side of the generator's output (and the discriminator's input)."""
    return self.role.output_size(self.data.image_size, self.data.scale)

  def to_dict(self) -> dict:
    """A JSON-ready dict (the role as its string value)."""
    return json_ready(dataclasses.asdict(self))

  @classmethod
  def from_dict(cls, content: dict) -> "ExperimentConfig":
    """Inverse of `to_dict`; unknown fields raise TypeError naming them.

    A config.json written before `RuntimeConfig` existed (its fields under "train")
    reads the same: those fields move to "runtime".
    """
    train = dict(content.get("train", {}))
    runtime = dict(content.get("runtime", {}))
    for name in RUNTIME_FIELD_NAMES:
      if name in train:
        runtime.setdefault(name, train.pop(name))
    return cls(model=ModelConfig(**content.get("model", {})),
               loss=LossConfig(**content.get("loss", {})),
               data=DataConfig(**content.get("data", {})),
               train=TrainConfig(**train), runtime=RuntimeConfig(**runtime))


# Flat names (the training flags') that are not their field's name.
FLAT_ALIASES = {"train_records": "train_pattern", "val_records": "val_pattern"}


def from_flat(**values) -> ExperimentConfig:
  """The one way flat settings (flags) become an `ExperimentConfig`.

  Each name goes to the section that has a field of that name (field names are unique
  across sections; `FLAT_ALIASES` maps --train_records / --val_records to the data
  patterns); what is not given keeps its default.

  Example: from_flat(role="sub", image_size=32, scale=2, model_dir="/tmp/run").

  Raises:
    errors.UsageError: a name that is no field of any section.
  """
  sections = {f.name: f.default_factory for f in dataclasses.fields(ExperimentConfig)}
  owner = {field.name: section for section, cls in sections.items()
           for field in dataclasses.fields(cls)}
  grouped = {section: {} for section in sections}
  unknown = []
  for name, value in values.items():
    field = FLAT_ALIASES.get(name, name)
    if field in owner:
      grouped[owner[field]][field] = value
    else:
      unknown.append(name)
  if unknown:
    raise errors.UsageError(f"no setting named {', '.join(sorted(unknown))}")
  return ExperimentConfig(**{s: sections[s](**grouped[s]) for s in sections})


def json_ready(value):
  """Converts enums (and containers of them) to plain JSON values."""
  if isinstance(value, enum.Enum):
    return value.value
  if isinstance(value, dict):
    return {k: json_ready(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_ready(v) for v in value]
  return value


def field_paths(section: type, *names: str) -> tuple:
  """"<section>.<field>" names of `ExperimentConfig` (as `to_dict` nests them), checked.

  Args:
    section: One of ModelConfig, LossConfig, DataConfig, TrainConfig, RuntimeConfig.
    *names: Its field names.

  Raises:
    ValueError: a class that is no section of ExperimentConfig, or a name that is no
      field of it (so a renamed field breaks at import, not silently in a comparison).
  """
  sections = {f.default_factory: f.name for f in dataclasses.fields(ExperimentConfig)}
  if section not in sections:
    raise errors.UsageError(f"{section.__name__} is not a section of ExperimentConfig")
  fields = {f.name for f in dataclasses.fields(section)}
  unknown = [n for n in names if n not in fields]
  if unknown:
    raise errors.UsageError(f"{section.__name__} has no field {', '.join(unknown)}")
  return tuple(f"{sections[section]}.{name}" for name in names)


RUNTIME_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(RuntimeConfig))

# Fields that change the models' shapes or their checkpoint (a resumed run must keep
# them), and the operational ones (cadences, strategy, paths) that change freely.
SHAPE_FIELDS = (field_paths(ModelConfig, "num_res_blocks", "filters",
                            "discriminator_filters", "image_skip")
                + field_paths(DataConfig, "image_size", "scale")
                + field_paths(TrainConfig, "role")
                + field_paths(RuntimeConfig, "mixed_precision"))
OPERATIONAL_FIELDS = (field_paths(RuntimeConfig, "model_dir", "steps_per_loop",
                                  "checkpoint_every", "summary_every", "eval_every",
                                  "eval_steps", "strategy", "tpu")
                      + field_paths(DataConfig, "skip_damaged_shards"))
# Raising one of these on resume continues the run (training.resume.extension).
LENGTH_FIELDS = field_paths(TrainConfig, "train_steps", "epochs")
