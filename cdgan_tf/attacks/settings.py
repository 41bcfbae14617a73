"""One place for attack settings: names, defaults, checks, budgets and step sizes.

`evaluate.py` (its white-box / adaptive PGD attacks) and the transfer-set generator
(`python -m tfrecords_builder.transfer_set`) both describe an attack with `AttackSettings`,
so the same text ("8/255"), the same defaults and the same errors apply everywhere.

Default step sizes: FGSM eps; MI-FGSM eps / steps (Dong et al. 2018); PGD
2.5 * eps / steps (Madry et al. 2018).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

from cdgan_tf.attacks import gradient
from cdgan_tf.attacks.budget import format_eps  # noqa: F401  (public here too)
from cdgan_tf.attacks.budget import parse_eps
from cdgan_tf.common import checks
from cdgan_tf.common import errors

ATTACKS = ("fgsm", "pgd", "pgd_l2", "mifgsm")
# Parameters each attack takes besides eps.
PARAMS = {"fgsm": (), "pgd": ("steps", "step_size", "seed"),
          "pgd_l2": ("steps", "step_size", "seed"),
          "mifgsm": ("steps", "step_size", "decay", "diversity_prob", "seed")}
DEFAULT_STEPS = 10
DEFAULT_DECAY = 1.0
DEFAULT_DIVERSITY_PROB = 0.0


def default_step_size(name: str, eps: float, steps: int) -> float:
  """The step size an attack uses when none is given."""
  if name == "fgsm":
    return eps
  if name == "mifgsm":
    return eps / steps
  return 2.5 * eps / steps


@dataclasses.dataclass(frozen=True)
class AttackSettings:
  """A validated gradient attack: which algorithm and its parameters.

  Build it with `AttackSettings.parse(...)`, which accepts text budgets and refuses
  parameters the attack does not take.

  Attributes:
    name: fgsm | pgd | pgd_l2 | mifgsm.
    eps: Budget (L-inf in [0, 1]; L2 norm on the [0, 1] scale for pgd_l2).
    eps_text: The budget as given ("16/255").
    steps: Iterations (1 for fgsm).
    step_size: The step size given, or None for the default.
    decay: MI-FGSM momentum decay (None for other attacks).
    diversity_prob: MI-FGSM input-diversity probability (None for other attacks).
  """
  name: str
  eps: float
  eps_text: str
  steps: int = DEFAULT_STEPS
  step_size: Optional[float] = None
  decay: Optional[float] = None
  diversity_prob: Optional[float] = None

  @classmethod
  def parse(cls, name: str, eps: Union[str, float], steps: int = DEFAULT_STEPS,
            step_size: Union[str, float, None] = None, decay: float = DEFAULT_DECAY,
            diversity_prob: float = DEFAULT_DIVERSITY_PROB) -> "AttackSettings":
    """Checks and normalises attack options.

    Raises:
      UsageError: unknown attack, a bad budget or step, an L-inf eps > 1 (a 0..255
        value?), or a non-default option the attack does not take.
    """
    checks.check_choice("attack", name, ATTACKS)
    takes = PARAMS[name]
    eps_value = parse_eps(eps)
    if name != "pgd_l2" and eps_value > 1.0:
      raise errors.UsageError(f"eps={eps!r} exceeds the [0, 1] pixel range; did you mean "
                              f"{eps}/255?")
    for option, value, default in (("step_size", step_size, None),
                                   ("decay", decay, DEFAULT_DECAY),
                                   ("diversity_prob", diversity_prob, DEFAULT_DIVERSITY_PROB)):
      if value != default and option not in takes:
        raise errors.UsageError(f"{option}={value} does not apply to attack {name!r}")
    if not 0.0 <= float(diversity_prob) <= 1.0:
      raise errors.UsageError(f"diversity_prob={diversity_prob} must be in [0, 1]")
    if int(steps) < 1:
      raise errors.UsageError(f"steps={steps} must be >= 1")
    return cls(name=name, eps=eps_value, eps_text=str(eps),
               steps=int(steps) if "steps" in takes else 1,
               step_size=None if step_size is None else parse_eps(step_size),
               decay=float(decay) if "decay" in takes else None,
               diversity_prob=float(diversity_prob) if "diversity_prob" in takes else None)

  @property
  def effective_step_size(self) -> float:
    return (self.step_size if self.step_size is not None
            else default_step_size(self.name, self.eps, self.steps))

  def record(self) -> dict:
    """What manifests and reports record (eps also on the 0-255 scale)."""
    return {"name": self.name, "eps": self.eps, "eps_text": self.eps_text,
            "eps_255": self.eps * 255.0, "steps": self.steps, "step_size": self.step_size,
            "step_size_effective": self.effective_step_size, "decay": self.decay,
            "diversity_prob": self.diversity_prob}

  def run(self, logits_fn, images, labels, seed: int = 0, eot_samples: int = 1):
    """Runs the attack (untargeted) on `logits_fn` (or a list: an ensemble).

    Args:
      logits_fn: images [N, H, W, C] in [0, 1] -> logits [N, K]; or a list of them.
      images: float32 [N, H, W, C] in [0, 1].
      labels: int [N] true labels.
      seed: Seed of the attack's randomness (PGD start, input diversity).
      eot_samples: PGD only: the mean of this many gradients per step (EOT against a
        randomized defense, `attacks.eot`).

    Returns:
      float32 [N, H, W, C] adversarial images in [0, 1].
    """
    if eot_samples != 1 and self.name not in ("pgd", "pgd_l2"):
      raise errors.UsageError(f"eot_samples={eot_samples} applies to pgd and pgd_l2, not "
                       f"{self.name}")
    if self.name == "fgsm":
      return gradient.fgsm(logits_fn, images, labels, self.eps)
    if self.name in ("pgd", "pgd_l2"):
      return gradient.pgd(logits_fn, images, labels, self.eps, steps=self.steps,
                          step_size=self.effective_step_size,
                          norm="l2" if self.name == "pgd_l2" else "linf",
                          random_start=True, seed=seed, eot_samples=eot_samples)
    return gradient.mifgsm(logits_fn, images, labels, self.eps, steps=self.steps,
                           step_size=self.effective_step_size, decay=self.decay,
                           diversity_prob=self.diversity_prob, seed=seed)
