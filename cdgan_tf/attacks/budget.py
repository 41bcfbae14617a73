"""Attack budgets as text: "8/255" <-> 0.0313... (the one parser, below `settings` and
`gradient`, so neither imports the other to read a budget)."""

from __future__ import annotations

import math

from cdgan_tf.common import errors


def parse_eps(value) -> float:
  """Parses an attack budget or step: 0.03, "0.03", "8/255" -> float.

  Raises:
    ValueError: naming the text when it is not a number or a fraction a/b, or is
      negative or not finite.
  """
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    result = float(value)
  else:
    text = str(value).strip()
    try:
      if "/" in text:
        num, den = text.split("/")
        result = float(num) / float(den)
      else:
        result = float(text)
    except (ValueError, ZeroDivisionError):
      raise errors.UsageError(
          f"eps={value!r} is not a number or a fraction such as '8/255'") from None
  if not math.isfinite(result) or result < 0:
    raise errors.UsageError(f"eps={value!r} must be a finite number >= 0")
  return result


def format_eps(value: float) -> str:
  """An attack budget or step for people, the inverse of `parse_eps`.

  0.0313725... -> "8/255" (whole 255ths), 0.00196... -> "0.5/255"; always in 1/255
  units, the scale of 8-bit pixels.
  """
  in_255 = float(value) * 255.0
  if abs(in_255 - round(in_255)) < 1e-6:
    return f"{int(round(in_255))}/255"
  return f"{in_255:.3g}/255"
