"""No import circle between the library's modules (function-level imports included)."""

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


def test_the_checker_finds_a_planted_cycle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_circle_in_the_repo():
  graph = import_graph()
  assert "cdgan_tf.attacks.settings" in graph
  assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
