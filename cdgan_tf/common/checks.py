"""Argument checks shared by the configs, the models, the defenses and the adapters.

Each raises `ValueError` (or the subclass given) with a message naming the argument and
what is wrong, so command lines can print it as one line.
"""

from __future__ import annotations

from typing import Iterable, Type


def check_choice(name: str, value, choices: Iterable, error: Type[Exception] = ValueError):
  """Returns `value` if it is one of `choices`, else raises `error` listing them."""
  choices = tuple(choices)
  if value not in choices:
    raise error(f"{name}={value!r} is not one of {', '.join(str(c) for c in choices)}")
  return value


def check_power_of_two(name: str, value, error: Type[Exception] = ValueError) -> int:
  """Returns `value` as an int if it is a power of two >= 1 (1, 2, 4, ...).

  Bools, floats and non-integers are refused even when they compare equal to one
  (numpy integers are accepted).
  """
  if isinstance(value, bool) or not hasattr(value, "__index__"):
    raise error(f"{name}={value!r} must be an integer power of 2 (1, 2, 4, 8, ...)")
  value = int(value)
  if value < 1 or value & (value - 1):
    raise error(f"{name}={value} must be a power of 2 (1, 2, 4, 8, ...)")
  return value


def check_geometry(image_size, scale, error: Type[Exception] = ValueError,
                   names=("image_size", "scale")):
  """The one check of a purifier's geometry: `scale` a power of 2 dividing `image_size`.

  Args:
    image_size: The large side (>= 1).
    scale: The resolution ratio.
    error: The exception type to raise.
    names: How the two values are named in the message (e.g. the flags).

  Returns:
    (image_size, scale) as ints.
  """
  scale = check_power_of_two(names[1], scale, error)
  if isinstance(image_size, bool) or not hasattr(image_size, "__index__") or image_size < 1:
    raise error(f"{names[0]}={image_size!r} must be a positive integer")
  image_size = int(image_size)
  if image_size % scale:
    raise error(f"{names[0]}={image_size} is not divisible by {names[1]}={scale}")
  return image_size, scale


def check_positive(name: str, value, error: Type[Exception] = ValueError):
  """Returns `value` if it is > 0."""
  if not value > 0:
    raise error(f"{name}={value!r} must be positive")
  return value
