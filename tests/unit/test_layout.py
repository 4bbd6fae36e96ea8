"""The code's shape (issue #10): every processor folder reads cli.py -> config.py -> run.py, the
project's modules import each other without cycles, and only at module level (the console scripts
import their command by name in `_entry`, after catching stop signals: that is the exception)."""

from __future__ import annotations

import ast
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
PROCESSORS = ("harmony_alerts", "harmony_events", "s3_batch", "aws_discovery", "hec_emulator")


def module_name(path: Path) -> str:
    parts = ["harmony_pipes", *path.relative_to(PLUGINS).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The project modules an import statement names (`from .x import y` may name module x.y)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        target = node.module if not node.level else ".".join(p for p in (base, node.module) if p)
        names = [target or "", *(f"{target}.{alias.name}" for alias in node.names)]
    return [name for name in names if name.startswith("harmony_pipes")]


def project_imports() -> tuple[dict[str, set[str]], list[str]]:
    """(module -> project modules it imports at module level, function-local project imports)."""
    graph: dict[str, set[str]] = {}
    local: list[str] = []
    for path in sorted(PLUGINS.rglob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        graph[module] = {
            name
            for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for name in imported(node, module, is_package)
        }
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and imported(node, module, is_package):
                        local.append(f"{path.relative_to(PLUGINS)}:{node.lineno}")
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}, local


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in graph[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_every_processor_folder_reads_cli_config_run() -> None:
    for name in PROCESSORS:
        folder = PLUGINS / name
        assert {"cli.py", "config.py", "run.py"} <= {p.name for p in folder.iterdir()}, name


def test_the_project_imports_itself_without_cycles_and_at_module_level() -> None:
    graph, local = project_imports()
    assert len(graph) > 60  # the walk found the package
    assert cycles(graph) == []
    assert local == []


def test_the_cycle_finder_finds_a_loop() -> None:
    """The check above can fail: a loop of three modules is found, a chain is not."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
