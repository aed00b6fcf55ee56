"""The architecture holds: layers import only downwards, no import circles, no private
names across modules, short functions, and a torch-free vocabulary.

Layers, each importing only from earlier ones (same-package imports are within a layer):

    0  fusion_core.vocab, fusion_core.errors
    1  fusion_core.io.*
    2  fusion_core.models.*
    3  fusion_core.explain.*
    4  fusion_core.batch.*, fusion_core.training.*   (not each other)
    5  fusion_core.cli, fusion_core.__main__, fusion_core (the lazy package API)
    6  app.*

Every import counts, including those inside functions: a function-level import is how an
upward dependency hides.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 60


def layer_of(module: str) -> tuple[int, str]:
    """(layer, group) of a first-party module; group separates same-layer siblings."""
    parts = module.split(".")
    if parts[0] == "app":
        return 6, "app"
    if module in ("fusion_core", "fusion_core.cli", "fusion_core.__main__"):
        return 5, "cli"
    sub = parts[1]
    table = {"vocab": (0, "vocab"), "errors": (0, "errors"), "io": (1, "io"), "models": (2, "models"),
             "explain": (3, "explain"), "batch": (4, "batch"), "training": (4, "training")}
    if sub not in table:
        raise AssertionError(f"{module}: not in any layer; add it to tests/test_architecture.py and the README")
    return table[sub]


def modules() -> dict[str, Path]:
    out = {}
    for root in ("fusion_core", "app"):
        for p in sorted((REPO / root).rglob("*.py")):
            rel = p.relative_to(REPO).with_suffix("")
            name = ".".join(rel.parts)
            if name.endswith(".__init__"):
                name = name[: -len(".__init__")]
            out[name] = p
    return out


def _resolve(module: str, node: ast.ImportFrom, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path) -> list[tuple[str, list[str], int, bool]]:
    """(imported module, names, line, type-checking only) for each first-party import."""
    tree = ast.parse(path.read_text(), str(path))
    type_checking_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for sub in ast.walk(node):
                type_checking_lines.add(getattr(sub, "lineno", -1))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in ("fusion_core", "app"):
                    out.append((a.name, [], node.lineno, node.lineno in type_checking_lines))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, path.name == "__init__.py")
            if target.split(".")[0] in ("fusion_core", "app"):
                out.append((target, [a.name for a in node.names], node.lineno, node.lineno in type_checking_lines))
    return out


def _known(target: str, mods: dict[str, Path], names: list[str]) -> list[str]:
    """The first-party modules an import reaches (`from pkg import sub` reaches pkg.sub)."""
    hits = [f"{target}.{n}" for n in names if f"{target}.{n}" in mods]
    return hits or ([target] if target in mods else [])


def test_layers_import_only_downwards():
    mods = modules()
    bad = []
    for name, path in mods.items():
        here = layer_of(name)
        for target, names, line, tc_only in imports_of(name, path):
            if tc_only:
                continue
            for dep in _known(target, mods, names):
                there = layer_of(dep)
                if there[0] > here[0] or (there[0] == here[0] and there[1] != here[1]):
                    bad.append(f"{path.relative_to(REPO)}:{line}: layer {here} imports {dep} (layer {there})")
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_no_import_circles():
    mods = modules()
    graph = {name: set() for name in mods}
    for name, path in mods.items():
        for target, names, _, tc_only in imports_of(name, path):
            if not tc_only:
                graph[name].update(d for d in _known(target, mods, names) if d != name)
    # A package's __init__ importing its own submodules is not a circle of logic; every
    # __init__ here is docs only, so this is kept strict.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            cycle = visit(n)
            assert cycle is None, "import circle: " + " → ".join(cycle)


def test_no_private_names_imported_across_modules():
    mods = modules()
    bad = []
    for name, path in mods.items():
        for target, names, line, _ in imports_of(name, path):
            priv = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if priv and target != name:
                bad.append(f"{path.relative_to(REPO)}:{line}: imports {', '.join(priv)} from {target}")
    assert not bad, "\n".join(bad)


def test_no_function_is_longer_than_the_limit():
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


@pytest.mark.parametrize("module", ["fusion_core", "fusion_core.vocab", "fusion_core.errors",
                                    "fusion_core.io.layout", "fusion_core.io.weld"])
def test_light_modules_do_not_import_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_layer_check_catches_an_upward_import(tmp_path):
    # The check itself can fail: an io module importing the engine is reported.
    src = tmp_path / "m.py"
    src.write_text("from ..explain.engine import explain\n")
    found = imports_of("fusion_core.io.m", src)
    assert found[0][0] == "fusion_core.explain.engine"
    assert layer_of(found[0][0])[0] > layer_of("fusion_core.io.m")[0]


@pytest.mark.parametrize("first", ["from fusion_core import explain", "import fusion_core.explain.engine"])
def test_the_public_explain_is_callable_whatever_was_imported_first(first):
    # `fusion_core.explain` is both the public function and the explain/ package; Python
    # rebinds the name to the package on a submodule import, so the package is callable too.
    code = (f"{first}\nfrom fusion_core import explain\n"
            "from fusion_core import load_checkpoint, load_features\n"
            "exp = explain(load_checkpoint('tests/golden/fusion_v2_h4.safetensors'), "
            "load_features('tests/golden/features.npz'))\n"
            "assert exp.contributions['shapley'].shape == (3, 4), exp")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
