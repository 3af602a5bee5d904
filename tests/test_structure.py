"""The package structure (issue 16): ``model`` knows no hardware, and no module imports itself
in a circle.  Every import counts, function-local ones included (read from the source)."""

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("model", "hw", "sim")


def _imports(path: Path, package: str) -> set[str]:
    """The project modules ``path`` imports, as dotted names (``from .x import y`` counts as
    ``package.x``; ``from . import y`` as ``package.y``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if node.module:
                    out.add(f"{package}.{node.module}")
                else:
                    out.update(f"{package}.{a.name}" for a in node.names)
            elif node.module and node.module.split(".")[0] in PACKAGES:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] in PACKAGES)
    return out


def _graph() -> dict[str, set[str]]:
    graph = {}
    for package in PACKAGES:
        for f in sorted((REPO / package).glob("*.py")):
            name = package if f.stem == "__init__" else f"{package}.{f.stem}"
            graph[name] = _imports(f, package)
    return {m: {d for d in deps if d in graph} for m, deps in graph.items()}


def test_graph_is_read():
    g = _graph()
    assert "model.cli" in g and "hw.board" in g and "model.config" in g["hw.board"] | g["hw.core"] | g["hw.schedule"]


def test_model_knows_no_hardware():
    """Only the CLI (parsing, dispatch, file handling) imports ``hw`` and ``sim``."""
    bad = {m: sorted(d for d in deps if d.split(".")[0] in ("hw", "sim"))
           for m, deps in _graph().items() if m.startswith("model") and m != "model.cli"}
    assert {m: d for m, d in bad.items() if d} == {}


def test_no_import_cycles():
    g = _graph()
    state, cycles = {}, []

    def visit(m, path):
        state[m] = "open"
        for d in sorted(g[m]):
            if state.get(d) == "open":
                cycles.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_cycle_check_can_fail(monkeypatch):
    """The cycle search finds a planted circle (so the check above can fail)."""
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    monkeypatch.setattr(sys.modules[__name__], "_graph", lambda: g)
    with pytest.raises(AssertionError):
        test_no_import_cycles()


def test_architecture_names_every_module():
    """docs/architecture.md's "Where things live" names every module of the three packages."""
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    missing = [f"{p}/{f.name}" for p in PACKAGES for f in sorted((REPO / p).glob("*.py"))
               if f.stem != "__init__" and f"`{p}/{f.name}`" not in section]
    assert missing == []
