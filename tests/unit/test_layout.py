"""The tree's layout holds: only the base layer at the top of ``agent/``, no import cycle, and
``defi-agent run`` loads no devnet code (no Anvil launcher, no simulated market)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL_ALLOWED = {"__init__.py", "__main__.py", "errors.py", "types.py"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_time_statements(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not those deferred into a function body
    (a deliberate late binding such as ``agent.dex.v2.fetch_v2_pool``) nor ``TYPE_CHECKING``."""
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports at import time (agent/ and strategies/)."""
    files = {
        _module_name(path): path
        for package in ("agent", "strategies")
        for path in (ROOT / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in _import_time_statements(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            targets.update(n for n in names if n in files and n != module)
        graph[module] = targets
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_agent_top_level_holds_only_the_base_layer() -> None:
    modules = {p.name for p in (ROOT / "agent").iterdir() if p.suffix == ".py"}
    assert modules - TOP_LEVEL_ALLOWED == set()


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_agent_and_strategies() -> None:
    graph = import_graph()
    assert "agent.engine.loop" in graph and graph["agent.app.build"]  # the graph was read
    assert cycles(graph) == []


def test_no_import_cycle_between_subpackages() -> None:
    """Packages follow the data flow: if ``agent.market`` imports ``agent.dex``, nothing in
    ``agent.dex`` imports ``agent.market`` (strategies count as one package)."""

    def package(module: str) -> str:
        return ".".join(module.split(".")[:2]) if module.startswith("agent.") else "strategies"

    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        packages.setdefault(package(module), set()).update(
            package(t) for t in targets if package(t) != package(module)
        )
    assert "agent.dex" in packages["agent.market"]
    assert cycles(packages) == []


def test_defi_agent_run_does_not_load_the_devnet() -> None:
    probe = (
        "import sys\n"
        "import agent.cli, agent.cli.runtime, agent.app.runner, agent.app.build\n"
        "print(sorted(m for m in sys.modules if m == 'agent.devnet' or "
        "m.startswith('agent.devnet.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
