"""The package graph, read from the source with ``ast`` (function-level lazy imports included).

* ``bench/`` reaches the plugins (``methods/``, ``datasets/``) only through :mod:`bench.discovery`;
* the plugins (``methods/``, ``datasets/``, ``bench/backbones/``) import ``bench`` and their own package only
  (not another plugin: no backbone family module outside ``bench/backbones/``), and ``methods/peft/`` does not
  import ``methods/distill/``;
* no two files import each other, directly or around a longer loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "methods", "datasets", "reports", "tools")
DISCOVERY = "bench.discovery"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in PACKAGES if (root / pkg).is_dir() for p in (root / pkg).rglob("*.py")}


def imported(module: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``module`` imports anywhere in its file (``from a import b`` counts ``a.b`` if it is one)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            anchor = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != module:
                out.add(target)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: imported(name, path, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def top(module: str) -> str:
    return module.split(".")[0]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_bench_reaches_plugins_only_through_discovery(graph):
    bad = [
        f"{m} imports {t}"
        for m, targets in graph.items()
        if top(m) == "bench" and m != DISCOVERY
        for t in targets
        if top(t) in ("methods", "datasets")
    ]
    assert not bad


def test_plugins_import_only_bench_and_their_own_package(graph):
    plugin_roots = {"methods": "methods", "datasets": "datasets", "bench.backbones": "bench.backbones"}
    bad = []
    for module, targets in graph.items():
        owner = next((r for r in plugin_roots if module == r or module.startswith(r + ".")), None)
        if owner is None:
            continue
        for target in targets:
            own = target == owner or target.startswith(owner + ".")
            family = target.startswith("bench.backbones.") and target != "bench.contracts.backbone"
            if not (own or (top(target) == "bench" and not family)):
                bad.append(f"{module} imports {target}")
            if module.startswith("methods.peft") and target.startswith("methods.distill"):
                bad.append(f"{module} imports {target}")
    assert not bad


def test_no_import_cycles_between_files(graph):
    assert cycles(graph) == []


def test_the_checks_see_lazy_imports_and_cycles(tmp_path):
    """The graph counts an import inside a function and finds a loop through it (so the checks above can fail)."""
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text("")
    (tmp_path / "bench" / "a.py").write_text("from bench import b\n")
    (tmp_path / "bench" / "b.py").write_text("def f():\n    from .a import x\n    import methods.peft.lora\n")
    (tmp_path / "methods" / "peft").mkdir(parents=True)
    for name in ("methods/__init__.py", "methods/peft/__init__.py", "methods/peft/lora.py"):
        (tmp_path / name).write_text("")
    small = import_graph(tmp_path)
    assert small["bench.b"] == {"bench.a", "methods.peft.lora"}
    assert cycles(small) == [["bench.a", "bench.b"]]
