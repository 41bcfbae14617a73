"""The evaluation's threat models: their names, budgets and what results.json records.

  transfer, pgd_classifier, pgd_defended, bpda, square / square_l2 (score-based),
  hopskipjump / hopskipjump_linf (decision-based); see evaluator.py for what each does.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from cdgan_tf.attacks import settings as attack_settings
from cdgan_tf.attacks import square as square_lib
from cdgan_tf.common import errors

TRANSFER = "transfer"
GRADIENT_THREATS = ("pgd_classifier", "pgd_defended", "bpda")
SCORE_THREATS = {"square": "linf", "square_l2": "l2"}  # name -> norm
DECISION_THREATS = {"hopskipjump": "l2", "hopskipjump_linf": "linf"}
QUERY_THREATS = dict(SCORE_THREATS, **DECISION_THREATS)
THREATS = (TRANSFER,) + GRADIENT_THREATS + tuple(QUERY_THREATS)


@dataclasses.dataclass(frozen=True)
class ThreatModel:
  """A threat model of the evaluation and, for the gradient ones, its PGD attack.

  Attributes:
    name: One of THREATS.
    attack: L-inf PGD settings (random start) for the gradient threat models; None for
      `transfer` and the query attacks.
    queries: Query budget per image of the query attacks (None for the others).
    eps: Budget of the query attacks (L-inf, or L2 on the [0, 1] scale).
  """
  name: str
  attack: Optional[attack_settings.AttackSettings] = None
  queries: Optional[int] = None
  eps: Optional[float] = None

  @classmethod
  def parse(cls, name: str, eps="8/255", steps: int = 10, step_size=None,
            queries: int = square_lib.DEFAULT_QUERIES, eps_l2="0.5") -> "ThreatModel":
    """Validates the name and builds the settings of a gradient or query threat model.

    Raises:
      UsageError: an unknown name or bad PGD / query parameters.
    """
    if name not in THREATS:
      raise errors.UsageError(f"unknown attack {name!r}: use {', '.join(THREATS)}")
    if name == TRANSFER:
      return cls(name)
    if name in QUERY_THREATS:
      if int(queries) < 1:
        raise errors.UsageError(f"queries={queries} must be >= 1")
      l2 = QUERY_THREATS[name] == "l2"
      value = attack_settings.parse_eps(eps_l2 if l2 else eps)
      if not l2 and value > 1.0:
        raise errors.UsageError(f"eps={eps!r} exceeds the [0, 1] pixel range")
      return cls(name, queries=int(queries), eps=value)
    return cls(name, attack_settings.AttackSettings.parse("pgd", eps, steps, step_size))

  def params(self) -> dict:
    """What results.json records for it."""
    if self.name in DECISION_THREATS:
      return {"eps": self.eps, "norm": QUERY_THREATS[self.name], "queries": self.queries,
              "access": "labels"}
    if self.queries is not None:
      return {"eps": self.eps, "norm": QUERY_THREATS[self.name], "queries": self.queries,
              "schedule": max(self.queries - 2, square_lib.SCHEDULE_ITERATIONS)}
    if self.attack is None:
      return {}
    return {"eps": self.attack.eps, "steps": self.attack.steps,
            "step_size": self.attack.effective_step_size, "norm": "linf"}


def check_attackable(threats: Sequence[ThreatModel], classifiers) -> None:
  """Refuses gradient attacks on forward-only classifiers with a clear message."""
  gradient = [t.name for t in threats if t.attack is not None]
  forward_only = [c.name for c in classifiers if not c.differentiable]
  if gradient and forward_only:
    raise errors.UsageError(
        f"gradient attacks ({', '.join(gradient)}) need differentiable classifiers; "
        f"forward-only: {', '.join(forward_only)} (use --attack=transfer with them; a "
        "TFLite model is forward-only when its ops have no float rebuild)")
