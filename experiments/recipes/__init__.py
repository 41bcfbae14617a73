"""The named recipes: `name -> (description, factory, default settings, work folder)`."""

from __future__ import annotations

from typing import Dict, NamedTuple, Sequence

from experiments import runner
from experiments.recipes import cifar10
from experiments.recipes import cifar10_mix
from experiments.recipes import imagenet
from experiments.recipes import imagenet_mix


class Entry(NamedTuple):
  description: str
  factory: object  # (settings, work) -> runner.Recipe
  settings: object
  default_work: str


def registry() -> Dict[str, Entry]:
  table = {}
  for module in (cifar10, cifar10_mix, imagenet, imagenet_mix):
    for name, (description, factory, settings) in module.recipes().items():
      table[name] = Entry(description, factory, settings, module.DEFAULT_WORK)
  return table


def get_recipe(name: str, work: str = "", overrides: Sequence[str] = ()) -> runner.Recipe:
  """The recipe `name` with `key=value` settings overrides, in `work` (default: its own).

  Raises:
    runner.RecipeError: no such recipe, or an override that does not parse.
  """
  table = registry()
  if name not in table:
    raise runner.RecipeError(f"no recipe {name} (recipes: {', '.join(table)})")
  entry = table[name]
  settings = runner.parse_overrides(entry.settings, overrides)
  return entry.factory(settings, work or entry.default_work)
