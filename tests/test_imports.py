"""No import circle between the library's modules, nothing importing upward.

Function-level imports included.
"""

import ast
import pathlib

from tests.conftest import REPO_ROOT

PACKAGES = ("cdgan_tf", "experiments", "tfrecords_builder")


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


def import_graph() -> dict:
  """module -> the set of this repo's modules it imports (anywhere in its code)."""
  modules = {_module_name(p): p for package in PACKAGES
             for p in (REPO_ROOT / package).rglob("*.py")}
  graph = {}
  for name, path in modules.items():
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
      else:
        continue
      targets.update(c for c in candidates if c in modules and c != name)
    # A package's __init__ is imported with any of its modules, but is no edge back.
    graph[name] = {t for t in targets if not name.startswith(t + ".")}
  return graph


def find_cycle(graph: dict):
  """One import cycle as a list of modules, or None."""
  state = {}

  def visit(node, stack):
    state[node] = "open"
    stack.append(node)
    for target in sorted(graph.get(node, ())):
      if state.get(target) == "open":
        return stack[stack.index(target):] + [target]
      if target not in state:
        found = visit(target, stack)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node, [])
      if found:
        return found
  return None


# The library's packages from the bottom up (DESIGN.md's "nothing importing upward"): a
# package imports only packages of a lower rank (and its own modules).
LAYERS = (
    ("cdgan_tf.common",),
    ("cdgan_tf.config", "cdgan_tf.image_ops"),
    ("cdgan_tf.data", "cdgan_tf.models", "cdgan_tf.classifiers"),
    ("cdgan_tf.attacks",),
    ("cdgan_tf.defenses", "cdgan_tf.training"),
    ("cdgan_tf.evaluation", "cdgan_tf.serving", "cdgan_tf.pretrained"),
    ("cdgan_tf.integrations", "cdgan_tf.flags", "cdgan_tf.cli"),
)
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}


def _package(module: str) -> str:
  return ".".join(module.split(".")[:2])


def upward_imports(graph: dict) -> list:
  """(module, imported module) pairs where a library package imports another package
  of the same or a higher rank (packages outside LAYERS are not checked)."""
  found = []
  for module, targets in sorted(graph.items()):
    source = _package(module)
    for target in sorted(targets):
      other = _package(target)
      if (source in RANK and other in RANK and other != source
          and RANK[other] >= RANK[source]):
        found.append((module, target))
  return found


def test_the_layer_checker_finds_a_planted_upward_import():
  graph = {"cdgan_tf.defenses.registry": {"cdgan_tf.serving.saving", "cdgan_tf.models.x"},
           "cdgan_tf.serving.saving": {"cdgan_tf.defenses.base"}}
  assert upward_imports(graph) == [("cdgan_tf.defenses.registry", "cdgan_tf.serving.saving")]


def test_every_library_package_has_a_layer():
  packages = {_package(m) for m in import_graph() if m.startswith("cdgan_tf.")}
  assert packages - set(RANK) == set(), "give the new package a rank in LAYERS"


def test_nothing_in_the_library_imports_upward():
  # e.g. defenses -> serving: the exported purifier's reader is defenses.exported.
  assert upward_imports(import_graph()) == []


def test_the_checker_finds_a_planted_cycle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_circle_in_the_repo():
  graph = import_graph()
  assert "cdgan_tf.attacks.settings" in graph
  assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
