"""The package graph, read from the source with ``ast`` (function-level lazy imports and
``importlib.import_module("literal")`` / ``__import__("literal")`` calls included).

* the rooms of ``bench/`` import only rooms below them, in the order of :data:`ROOMS` (the foundation modules
  ``registry``, ``discovery``, ``fileio``, ``logs`` at the bottom, the application layer ``app`` at the top);
  only ``app`` (and ``tools/``) import ``reports/``;
* no module of ``bench/`` imports ``methods/`` or ``datasets/`` by name: the registries name their plugin
  packages and :mod:`bench.discovery` imports whatever modules they hold;
* no module outside ``bench/backbones/`` imports a backbone family module (they reach families by registry);
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
PACKAGES = ("bench", "methods", "datasets", "protocols", "reports", "tools")
PLUGINS = ("methods", "datasets", "protocols")
# bench/'s rooms, bottom to top: a module may import its own room and the rooms before it
ROOMS = (
    "foundation",
    "config",
    "contracts",
    "backbones",
    "hardware",
    "data",
    "eval",
    "tasks",
    "train",
    "runs",
    "use",
    "app",
)


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
        if isinstance(node, ast.Call) and _dynamic_import(node):
            targets = [node.args[0].value]
        elif isinstance(node, ast.Import):
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


def _dynamic_import(node: ast.Call) -> bool:
    """``importlib.import_module("a.b")``, ``import_module("a.b")`` or ``__import__("a.b")`` with a literal name."""
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    literal = bool(node.args) and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
    return name in ("import_module", "__import__") and literal


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


def room(module: str) -> str:
    """The room of a ``bench`` module: its sub-package, or ``"foundation"`` for the top-level modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ROOMS) else "foundation"


def room_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in graph.items():
        if top(module) != "bench":
            continue
        if room(module) not in ROOMS:
            bad.append(f"{module}: room {room(module)!r} is not in ROOMS")
            continue
        for target in targets:
            if top(target) == "bench" and ROOMS.index(room(target)) > ROOMS.index(room(module)):
                bad.append(f"{module} ({room(module)}) imports {target} ({room(target)}), a room above it")
            if top(target) in PLUGINS:
                bad.append(f"{module} imports the plugin module {target} by name")
            if top(target) == "reports" and room(module) != "app":
                bad.append(f"{module} imports {target}: only bench.app may import reports")
    return bad


def family_violations(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{m} imports the backbone family module {t}"
        for m, targets in graph.items()
        if not (m == "bench.backbones" or m.startswith("bench.backbones."))
        for t in targets
        if t.startswith("bench.backbones.")
    ]


def test_bench_rooms_import_only_rooms_below_and_no_plugin_by_name(graph):
    assert room_violations(graph) == []


def test_backbone_families_are_reached_only_through_the_registry(graph):
    assert family_violations(graph) == []


def test_plugins_import_only_bench_and_their_own_package(graph):
    plugin_roots = {
        "methods": "methods",
        "datasets": "datasets",
        "protocols": "protocols",
        "bench.backbones": "bench.backbones",
    }
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


def test_the_room_checks_can_fail(tmp_path):
    """A dynamic import of a plugin, a room importing one above it, a family import and a reports import
    from outside ``app`` are each reported (so the rules above are not vacuous)."""
    files = {
        "bench/__init__.py": "",
        "bench/registry.py": "import importlib\nimportlib.import_module('datasets._prepare')\n",
        "bench/config/__init__.py": "",
        "bench/config/schema.py": "from bench.runs import runner\n",
        "bench/runs/__init__.py": "",
        "bench/runs/runner.py": "def f():\n    from bench.backbones.sam2 import x\n    import reports.report\n",
        "bench/backbones/__init__.py": "",
        "bench/backbones/sam2.py": "",
        "datasets/__init__.py": "",
        "datasets/_prepare.py": "",
        "reports/__init__.py": "",
        "reports/report.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    small = import_graph(tmp_path)
    assert small["bench.registry"] == {"datasets._prepare"}
    assert sorted(room_violations(small)) == [
        "bench.config.schema (config) imports bench.runs.runner (runs), a room above it",
        "bench.registry imports the plugin module datasets._prepare by name",
        "bench.runs.runner imports reports.report: only bench.app may import reports",
    ]
    assert family_violations(small) == ["bench.runs.runner imports the backbone family module bench.backbones.sam2"]
