"""The layer rule of ARCHITECTURE.md, read from the source with ``ast`` (nothing is imported).

Layers, each may import only its own or lower-numbered ones::

    1 core/ (core/kernels/ included)  <  2 problems/  <  3 models/  <  4 baselines/
    <  5 rundir/, viz/ and single modules (metrics.py)
    <  6 cli/ and __main__.py

``feassample/__init__.py`` and ``feassample/api.py`` are the public facade on top: they may import
anything, and nothing below may import them, except that the app layer may import ``api`` (the
app runs ``fs.sample``, the one entry point, like any user). Every import counts: module-level, lazy ones inside
functions, and ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name.
The module import graph inside the package must also be free of cycles (a package's
``__init__`` importing its own submodules is fine; importing ``a.b`` is an edge to ``a.b`` only,
not to the package ``a`` that Python also runs first).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "feassample"

FACADE = 7  # above every layer
LAYER_NAMES = {1: "core", 2: "problems", 3: "models", 4: "baselines",
               5: "rundir, viz, metrics", 6: "cli", FACADE: "facade"}
SUBPACKAGE_LAYERS = {"core": 1, "problems": 2, "models": 3, "baselines": 4, "rundir": 5, "viz": 5,
                     "cli": 6}
APP_MODULES = {"app", "__main__"}  # single modules of the cli layer
FACADE_MODULES = {"__init__", "api"}
APP_MAY_IMPORT = {"api"}  # the app is a client of the one entry point, fs.sample


@dataclass(frozen=True)
class Import:
    """One import statement: who imports what, where."""

    source: str   # importing module, dotted ("feassample.core.problem")
    target: str   # imported module inside the package, dotted
    path: Path
    line: int


def layer_of(module: str, package: str) -> Optional[int]:
    """The layer number of a dotted module name, ``None`` when no rule assigns one."""
    parts = module.split(".")[1:]
    if not parts:
        return FACADE  # the package's __init__
    if len(parts) == 1:
        name = parts[0]
        if name in SUBPACKAGE_LAYERS:
            return SUBPACKAGE_LAYERS[name]
        if name in FACADE_MODULES:
            return FACADE
        return 6 if name in APP_MODULES else 5
    return SUBPACKAGE_LAYERS.get(parts[0])


def discover(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under the package directory ``root``."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, name: Optional[str]) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _within(name: str, modules: dict[str, Path]) -> Optional[str]:
    """The longest prefix of ``name`` that is a module of the package, else ``None``."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in modules:
            return candidate
    return None


def _literal(node: ast.AST) -> Optional[str]:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def imports_of(module: str, modules: dict[str, Path]) -> list[Import]:
    """Every import of a package module by ``module``, wherever it stands in the file."""
    path = modules[module]
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def add(name: str, line: int) -> None:
        target = _within(name, modules)
        if target is not None and target != module:
            imp = Import(module, target, path, line)
            if imp not in found:  # ``from .x import a, b`` is one import of x
                found.append(imp)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, is_package, node.level, node.module) if node.level
                    else node.module or "")
            for alias in node.names:
                # ``from pkg import sub`` imports the submodule pkg.sub when there is one
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else base, node.lineno)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = (func.attr if isinstance(func, ast.Attribute)
                      else func.id if isinstance(func, ast.Name) else None)
            name = _literal(node.args[0])
            if called not in ("import_module", "__import__") or name is None:
                continue
            if name.startswith("."):
                anchor = _literal(node.args[1]) if len(node.args) > 1 else None
                if anchor is None:  # import_module(".x", __package__) and the like
                    anchor = module if is_package else module.rpartition(".")[0]
                level = len(name) - len(name.lstrip("."))
                name = _resolve_relative(anchor, True, level, name.lstrip(".") or None)
            add(name, node.lineno)
    return found


def layer_violations(root: Path) -> list[str]:
    """One message per import of a higher layer (or of a module no layer rule covers)."""
    modules = discover(root)
    package = root.name
    problems = []
    for module in modules:
        mine = layer_of(module, package)
        rel = modules[module].relative_to(root.parent)
        if mine is None:
            problems.append(f"{rel}:1: {module} is in no layer: add its package to the layer "
                            "rule (ARCHITECTURE.md) before using it")
            continue
        for imp in imports_of(module, modules):
            theirs = layer_of(imp.target, package)
            if mine == 6 and imp.target.split(".")[1:] in [[m] for m in APP_MAY_IMPORT]:
                continue
            if theirs is not None and theirs > mine:
                problems.append(
                    f"{rel}:{imp.line}: layer {mine} ({LAYER_NAMES[mine]}) module {module} imports "
                    f"{imp.target}, layer {theirs} ({LAYER_NAMES[theirs]}): a module may import "
                    "only its own or lower layers")
    return problems


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def import_cycles(root: Path) -> list[str]:
    """One message per cycle of the module import graph, naming every import line in it."""
    modules = discover(root)
    edges: dict[tuple[str, str], list[Import]] = {}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module in modules:
        for imp in imports_of(module, modules):
            if modules[module].name == "__init__.py" and imp.target.startswith(module + "."):
                continue  # a package's __init__ importing its own submodules is fine
            graph[module].add(imp.target)
            edges.setdefault((module, imp.target), []).append(imp)
    messages = []
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue
        inside = set(component)
        lines = [f"{imp.path.relative_to(root.parent)}:{imp.line}: {imp.source} imports {imp.target}"
                 for (src, dst), imps in sorted(edges.items())
                 if src in inside and dst in inside for imp in imps]
        messages.append("import cycle between " + ", ".join(component) + " (no module may "
                        "import itself through others); the imports in it:\n    "
                        + "\n    ".join(lines))
    return messages


# -- the rule on feassample --------------------------------------------------------------------

def test_every_module_imports_only_its_own_or_lower_layers():
    problems = layer_violations(PACKAGE_ROOT)
    assert not problems, "layer rule broken:\n" + "\n".join(problems)


def test_the_module_import_graph_has_no_cycle():
    cycles = import_cycles(PACKAGE_ROOT)
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_every_module_of_the_package():
    modules = discover(PACKAGE_ROOT)
    # guards against a path change that would make both tests above check nothing
    assert {"feassample", "feassample.core.problem", "feassample.problems.intersection",
            "feassample.cli.app"} <= set(modules)
    assert sum(len(imports_of(m, modules)) for m in modules) > 50


# -- the checker itself, on a synthetic package ------------------------------------------------

def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_reports_upward_imports_of_every_kind_and_cycles(tmp_path):
    pkg = tmp_path / "toy"
    _write(pkg, {
        "__init__.py": "from .core import thing\nfrom . import app\n",   # the facade: fine
        "api.py": "from .viz import x\nmain = 1\n",                        # the facade: fine
        "core/__init__.py": "from .thing import thing\n",                 # own submodule: fine
        "core/thing.py": "import math\n\ndef thing():\n    from ..problems import p\n    return p\n",
        "core/lazy.py": "import importlib\n\n\ndef f():\n"
                        "    return importlib.import_module('toy.models.net')\n",
        "core/rel.py": "import importlib\nm = importlib.import_module('..viz', 'toy.core')\n",
        "problems/__init__.py": "",
        "problems/p.py": "from ..core.thing import thing\n",
        "problems/q.py": "\nimport toy.models.net\n",
        "models/__init__.py": "",
        "models/net.py": "from ..problems import q\n",
        "viz.py": "from . import metrics\n",
        "metrics.py": "from .viz import x\n",
        "app.py": "from . import viz\nfrom .core import thing\nfrom .api import main\n",
        "io.py": "from .api import main\nimport toy\n",     # only the app may use the api
        "extras/odd.py": "",
    })
    violations = layer_violations(pkg)
    text = "\n".join(violations)
    assert "toy/core/thing.py:4: layer 1 (core) module toy.core.thing imports toy.problems.p, " \
           "layer 2 (problems)" in text
    assert "toy/core/lazy.py:5: layer 1 (core) module toy.core.lazy imports toy.models.net" in text
    assert "toy/core/rel.py:2: layer 1 (core) module toy.core.rel imports toy.viz, layer 5" in text
    assert "toy/problems/q.py:2: layer 2 (problems) module toy.problems.q imports toy.models.net" in text
    assert "toy/extras/odd.py:1: toy.extras.odd is in no layer" in text
    assert "toy/io.py:1: layer 5 (rundir, viz, metrics) module toy.io imports " \
           "toy.api, layer 7 (facade)" in text
    assert "toy/io.py:2: layer 5 (rundir, viz, metrics) module toy.io imports " \
           "toy, layer 7 (facade)" in text
    assert len(violations) == 7, text  # nothing else: facade, own-package and downward imports pass

    cycles = import_cycles(pkg)
    text = "\n".join(cycles)
    assert len(cycles) == 3, text  # models.net <-> problems.q is the third
    assert "import cycle between toy.core.thing, toy.problems.p" in text
    assert "toy/core/thing.py:4: toy.core.thing imports toy.problems.p" in text
    assert "toy/problems/p.py:1: toy.problems.p imports toy.core.thing" in text
    assert "import cycle between toy.models.net, toy.problems.q" in text
    assert "import cycle between toy.metrics, toy.viz" in text


def test_a_clean_package_passes(tmp_path):
    pkg = tmp_path / "clean"
    _write(pkg, {
        "__init__.py": "from .problems.p import p\nfrom . import app\n",
        "core/__init__.py": "", "core/a.py": "import os\n",
        "problems/__init__.py": "from .p import p\n",
        "problems/p.py": "from ..core import a\nfrom . import q\np = 1\n",
        "problems/q.py": "from ..core.a import os\n",
        "app.py": "from .problems import p\nfrom . import viz\n",
        "viz.py": "import importlib\nimportlib.import_module('clean.core.a')\n",
    })
    assert layer_violations(pkg) == []
    assert import_cycles(pkg) == []


def test_rundir_never_imports_a_kernel():
    """Run directories store rows and states as values; no kernel's class is needed to do so."""
    modules = discover(PACKAGE_ROOT)
    kernels = "feassample.core.kernels"
    found = [f"{imp.path.relative_to(PACKAGE_ROOT.parent)}:{imp.line}: {imp.source} imports {imp.target}"
             for module in modules if module.split(".")[:2] == ["feassample", "rundir"]
             for imp in imports_of(module, modules)
             if imp.target == kernels or imp.target.startswith(kernels + ".")]
    assert not found, "rundir imports a kernel:\n" + "\n".join(found)
    assert any(m.startswith("feassample.rundir.") for m in modules)  # the rule checks something


def _third_party_imports(path: Path) -> set[str]:
    """Top-level names of the modules a file imports (absolute imports only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_cli_reads_hydra_configs():
    readers = [str(p.relative_to(PACKAGE_ROOT.parent)) for p in sorted(PACKAGE_ROOT.rglob("*.py"))
               if {"hydra", "omegaconf"} & _third_party_imports(p)
               and p.relative_to(PACKAGE_ROOT).parts[0] != "cli"]
    assert not readers, f"Hydra/OmegaConf imported outside feassample/cli: {readers}"


def test_kernels_touch_no_files_and_the_driver_no_kernel_state():
    modules = discover(PACKAGE_ROOT)
    kernels = [m for m in modules if m.startswith("feassample.core.kernels")]
    for m in kernels:
        targets = {imp.target for imp in imports_of(m, modules)}
        assert not {t for t in targets if t.startswith(("feassample.rundir", "feassample.cli"))}, m
        assert not {"os", "shutil", "pathlib", "tempfile"} & _third_party_imports(modules[m]), m
    for m in (m for m in modules if m.startswith("feassample.core.driver")):
        for imp in imports_of(m, modules):
            # the protocol and the shared seed phase only: never a kernel's own package
            assert imp.target in ("feassample.core.kernels.base", "feassample.core.kernels.seeds") or \
                not imp.target.startswith("feassample.core.kernels"), (m, imp.target)
