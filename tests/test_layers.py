"""The layout's one-way flow (DESIGN.md): cluster -> strategy -> data/models -> checkpoint ->
evaluation/train -> job/cli; launch uses only cluster. Read from the import statements."""

import ast
import collections
import os

from tests.helpers import REPO

# What each folder of tfdist/ may import from the others (shared base modules: always).
ALLOWED = {
    "cluster": set(),
    "strategy": {"cluster"},
    "data": set(),
    "models": set(),
    "checkpoint": {"cluster", "strategy", "models"},
    "evaluation": {"checkpoint", "data", "models"},
    "train": {"cluster", "strategy", "data", "models", "checkpoint", "evaluation"},
    "launch": {"cluster"},
    "bench": {"data", "train", "launch"},  # the bench starts jobs and emulated links
}
BASE = {"tfdist", "_lazy", "_input", "_user_code", "_processes"}


def imports() -> dict[str, set[str]]:
  """Module (dotted) -> the tfdist modules it imports, anywhere in its body."""
  found = collections.defaultdict(set)
  for folder, _, files in os.walk(os.path.join(REPO, "tfdist")):
    for name in files:
      if not name.endswith(".py"):
        continue
      path = os.path.join(folder, name)
      module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".").removesuffix(".__init__")
      for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tfdist"):
          found[module].add(node.module)
          found[module].update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
          found[module].update(a.name for a in node.names if a.name.startswith("tfdist"))
  return found


def folder(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else "tfdist"


def test_no_folder_imports_a_layer_above_it():
  wrong = sorted(f"{module} imports {target}" for module, targets in imports().items()
                 for target in targets
                 if folder(module) in ALLOWED and folder(target) != folder(module)
                 and folder(target) not in ALLOWED[folder(module)] | BASE)
  assert wrong == []


def test_no_import_cycle_between_modules():
  graph = imports()
  modules = set(graph)
  edges = {m: {t for t in graph[m] if t in modules and t != m} for m in modules}
  state, cycle = {}, []

  def visit(module, path):
    state[module] = "open"
    for target in sorted(edges[module]):
      if state.get(target) == "open":
        cycle.append(path[path.index(target):] + [target] if target in path else [module, target])
      elif target not in state:
        visit(target, path + [target])
    state[module] = "done"

  for module in sorted(modules):
    if module not in state:
      visit(module, [module])
  # A package's __init__ importing its own submodules (and them importing the package's
  # names) is how packages export: only cycles between modules that are not packages count.
  packages = {m for m in modules if os.path.exists(
      os.path.join(REPO, *m.split("."), "__init__.py"))}
  assert [c for c in cycle if not packages & set(c)] == []
