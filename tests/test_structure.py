"""The package's shape: a light `import autodistill`, no import cycles, no upward imports."""

import ast
import json
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "autodistill"
HEAVY = ("vizier", "grpc", "tensorflow_datasets", "tensorflow", "torch")


def test_import_autodistill_loads_no_vizier_grpc_tfds_or_torch():
  # A fresh interpreter: this test process has imported everything already.
  code = ("import json, sys, autodistill; print(json.dumps(sorted({m.split('.')[0] "
          "for m in sys.modules})))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)
  loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
  assert "jax" in loaded and "autodistill" in loaded  # the check sees what was imported
  assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
  """The autodistill modules ``path`` imports at module level (imports inside functions are
  deferred on purpose and cannot form an import-time cycle)."""
  tree = ast.parse(path.read_text(encoding="utf-8"))
  found = set()
  for node in tree.body:
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      # `from autodistill import files` imports the submodule, not the package's __init__.
      submodules = [f"{node.module}.{alias.name}" for alias in node.names]
      names = [n for n in submodules if n in modules] or [node.module]
    else:
      continue
    found |= {name for name in names if name in modules}
  return found


def _graph() -> dict[str, set[str]]:
  paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
  modules = set(paths)
  return {name: _imports(path, modules) - {name} for name, path in paths.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
  """One import cycle of ``graph`` (a depth-first search), or []."""
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(node: str) -> list[str]:
    state[node] = 1
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 1:
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    stack.pop()
    state[node] = 2
    return []

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return []


def test_no_import_cycle_among_autodistill_modules():
  graph = _graph()
  assert len(graph) > 40 and graph["autodistill.pipeline"]  # the walk sees the package
  assert _cycle(graph) == []
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # and finds one


# The floors, bottom to top: a module imports only from its own floor or those below.
FLOORS = [
    {"autodistill.errors", "autodistill.files", "autodistill.workdir", "autodistill.sharding",
     "autodistill.timing", "autodistill.progress",
     "autodistill.models", "autodistill.space", "autodistill.data", "autodistill.hardware"},
    {"autodistill.train"},
    {"autodistill.distill", "autodistill.finetune", "autodistill.export"},
    {"autodistill.search"},
    {"autodistill.supernet"},
    {"autodistill.config"},
    {"autodistill.experiment"},
    {"autodistill.pipeline"},
    {"autodistill.main", "autodistill.__main__", "autodistill"},
]


def _floor(module: str) -> int:
  for level, names in enumerate(FLOORS):
    if any(module == n or module.startswith(n + ".") for n in names if n != "autodistill"):
      return level
  assert module == "autodistill", module
  return len(FLOORS) - 1


def test_no_module_imports_from_a_floor_above_it():
  upward = [(module, imported) for module, imports in _graph().items() for imported in imports
            if _floor(imported) > _floor(module)]
  assert upward == []
