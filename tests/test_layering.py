"""The import layering of docs/ARCHITECTURE.md, checked on the source (ast; nothing is imported).

contract (models/contract) imports nothing of ours; estimators and the rest of models sit on it and never import
each other; pipeline is on top. No import cycles among modules, and no function-local imports of our own packages
(except the few that keep torch off the ONNX inference path, listed in LAZY_TORCH).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "estimators", "pipeline")
# Function-local imports allowed: each loads torch, which `pipeline run --onnx` and `pipeline export`'s caller
# must not pay for (docs/RESULTS.md: the ONNX path never imports torch).
LAZY_TORCH = {("pipeline.infer.prediction", "models.checkpoint"), ("pipeline.infer.onnx_export", "models.checkpoint"),
              ("pipeline.cli.run", "models.training.runtime")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def layer(mod: str) -> str:
    if mod == "models.contract" or mod.startswith("models.contract."):
        return "contract"
    return mod.split(".")[0]


# What each layer may import (besides itself).
ALLOWED = {"contract": {"contract"}, "estimators": {"contract", "estimators"}, "models": {"contract", "models"},
           "pipeline": {"contract", "estimators", "models", "pipeline"}}


def imports_of(mod: str) -> list[tuple[str, bool, int]]:
    """(our module imported, whether inside a function, line) for every import statement of `mod`."""
    tree = ast.parse(MODULES[mod].read_text())
    local_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import sub` imports the sub-module when there is one, else a name of pkg
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                       for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            pytest.fail(f"{mod}:{node.lineno}: relative import; use the absolute module name")
        for t in targets:
            if t.split(".")[0] in PACKAGES:
                assert t in MODULES, f"{mod}:{node.lineno}: imports {t}, which is not a module here"
                found.append((t, id(node) in local_nodes, node.lineno))
    return found


GRAPH = {mod: imports_of(mod) for mod in MODULES}


def layer_violations(graph: dict) -> list[str]:
    return [f"{mod} ({layer(mod)}) imports {t} ({layer(t)}), line {line}"
            for mod, edges in graph.items() for t, _, line in edges if layer(t) not in ALLOWED[layer(mod)]]


def local_imports(graph: dict) -> list[str]:
    return [f"{mod}:{line} imports {t} inside a function" for mod, edges in graph.items()
            for t, local, line in edges if local and (mod, t) not in LAZY_TORCH]


def find_cycle(graph: dict) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(mod: str) -> list[str] | None:
        state[mod] = 1
        path.append(mod)
        for t, _, _ in graph.get(mod, []):
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            if t not in state and (found := visit(t)):
                return found
        path.pop()
        state[mod] = 2
        return None

    for mod in sorted(graph):
        if mod not in state and (found := visit(mod)):
            return found
    return None


def test_every_package_is_found():
    assert {"models.contract.errors", "models.training.fit", "estimators", "pipeline.cli"} <= set(MODULES)


def test_no_layer_imports_a_higher_one():
    bad = layer_violations(GRAPH)
    assert not bad, "\n".join(bad)


def test_no_function_local_imports_of_our_packages():
    bad = local_imports(GRAPH)
    assert not bad, "\n".join(bad)


def test_package_inits_of_models_and_pipeline_import_nothing():
    for mod in ("models", "pipeline", "models.contract", "models.net", "models.training"):
        assert not GRAPH[mod], f"{mod}/__init__.py imports {GRAPH[mod]}"


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_catch_what_they_are_for():
    bad = {"models.contract.errors": [("pipeline.cli", False, 1)],  # the leaf importing the top
           "estimators.base": [("models.net.stgcn", False, 2)],     # estimators reaching into models
           "models.net.stgcn": [("models.training.fit", True, 3)],  # a function-local import
           "models.training.fit": [("models.net.stgcn", False, 4)]}  # ... closing a cycle
    assert len(layer_violations(bad)) == 2
    assert local_imports(bad) == ["models.net.stgcn:3 imports models.training.fit inside a function"]
    assert find_cycle(bad) == ["models.net.stgcn", "models.training.fit", "models.net.stgcn"]
    assert find_cycle({"a": [("b", False, 1)], "b": []}) is None
