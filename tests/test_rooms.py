"""The house rules, checked on the source: arrows point down, no cycles, small modules, few ignores.

Rooms, lowest first: ``kernel/`` (installed as ``interlock``), ``policies/``, ``adapters/``,
``actors/``. A module may import from its own room or a lower one, never a higher one; the one
written exception is ``interlock.testing``, the testing aid, which may start the simulator.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = {"kernel": 0, "policies": 1, "adapters": 2, "actors": 3}
# A testing aid for users' tests: it starts the loopback simulator, which lives in adapters/.
UPWARD_ALLOWED = {"interlock.testing"}
MAX_LINES = 400
MAX_IGNORES = 5
# Libraries that do I/O: a pure policy imports none of them.
IO_MODULES = {"aiosqlite", "sqlite3", "httpx", "httpx2", "aiohttp", "socket", "subprocess", "pathlib", "redis"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    parts = ["interlock", *parts[1:]] if parts[0] == "kernel" else ["interlock", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            found[_module_name(path)] = path
    return found


SOURCES = _sources()


def _room(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("policies", "adapters", "actors"):
        return ROOMS[parts[1]]
    return ROOMS["kernel"]


def _runtime_imports(path: Path) -> set[str]:
    """Modules imported when the file runs (imports under ``if TYPE_CHECKING:`` excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                typing_only.update(id(n) for n in ast.walk(inner))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module)
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    return imported


def _internal(imported: set[str]) -> set[str]:
    return {name for name in imported if name in SOURCES}


def test_the_sources_were_found() -> None:
    assert len(SOURCES) > 50
    assert "interlock.actors.request._run" in SOURCES
    assert "interlock.policies._failover" in SOURCES


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_no_arrow_points_up(module: str) -> None:
    """``actors -> adapters -> policies -> kernel``: nothing imports from a higher room."""
    if module in UPWARD_ALLOWED:
        return
    mine = _room(module)
    upward = sorted(name for name in _internal(_runtime_imports(SOURCES[module])) if _room(name) > mine)
    assert not upward, f"{module} imports from a higher room: {upward}"


def test_no_import_cycle() -> None:
    """The module-level import graph is acyclic (typing-only imports aside)."""
    graph = {m: _internal(_runtime_imports(p)) - {m} for m, p in SOURCES.items()}
    # A package's __init__ importing a submodule is an arrow too; keep only module -> module edges.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if m.startswith("interlock.policies")))
def test_policies_do_no_io(module: str) -> None:
    """A policy is a pure function of its arguments: it imports no library that does I/O."""
    imported = {name.split(".")[0] for name in _runtime_imports(SOURCES[module])}
    assert not imported & IO_MODULES, f"{module} imports {sorted(imported & IO_MODULES)}"


def test_no_module_is_too_long() -> None:
    long = {m: n for m, p in SOURCES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_few_type_ignores_each_with_its_code_and_reason() -> None:
    """At most five ``type: ignore`` in the source, each naming its error code and saying why."""
    found: list[str] = []
    for module, path in SOURCES.items():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "type: ignore" not in line:
                continue
            found.append(f"{module}:{number}")
            assert re.search(r"type: ignore\[[a-z-]+(, *[a-z-]+)*\]\s+#\s*\S", line), (
                f"{module}:{number} needs its code and a reason: {line.strip()}"
            )
    assert len(found) <= MAX_IGNORES, f"{len(found)} type: ignore: {found}"
