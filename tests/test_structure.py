"""The package structure (issue 16): ``model`` knows no hardware, and no module imports itself
in a circle.  Every import counts, function-local ones included (read from the source)."""

import ast
import os
import subprocess
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


def test_non_editable_install_writes_nothing_into_site_packages(tmp_path):
    """A plain (non-editable) install carries both shipped models as package data, and its
    default output folders are the current directory, not site-packages."""
    import shutil
    import subprocess
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(src)], check=True, capture_output=True)
    work = tmp_path / "work"
    work.mkdir()
    probe = ("import model.cli as c, model.codec as k, pathlib; "
             "print(c.REPO); print(k.DEFAULT_MODEL.is_file()); "
             "print((pathlib.Path(k.__file__).parent / 'large' / 'model.pt').is_file())")
    out = subprocess.run([sys.executable, "-c", probe], cwd=work, env={"PYTHONPATH": str(site), "PATH": ""},
                         check=True, capture_output=True, text=True).stdout.split()
    assert out == [str(work.resolve()), "True", "True"]


def test_info_and_truncate_import_no_torch(tmp_path):
    """``cascade info`` and ``cascade truncate`` answer without importing PyTorch (issue 16 item
    6: they read a stream header and a model file's config only)."""
    import numpy as np
    from model.codec import Codec
    root = Path(__file__).resolve().parent.parent
    src = tmp_path / "s.cas"
    codec = Codec.load()
    x = np.random.default_rng(0).standard_normal(4000) * 0.1
    src.write_bytes(codec.encode_bytes(x, "fixed"))
    code = ("import sys; from model.cli import main\n"
            f"for argv in (['info', {str(src)!r}], ['truncate', {str(src)!r}, {str(tmp_path / 'c.cas')!r}, '--stages', '2']):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    _run_fresh(code, root)
    assert (tmp_path / "c.cas").is_file()


def _run_fresh(code: str, root: Path):
    """Run ``code`` in a fresh interpreter at the repository root; it must exit 0."""
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_refused_audio_imports_no_torch(tmp_path):
    """``cascade encode`` refuses a stereo or wrong-rate WAV (one line, exit 1) before PyTorch,
    SciPy's signal package or the weights load: the argument checks answer in well under a
    second (issue 16 item 6)."""
    import wave
    root = Path(__file__).resolve().parent.parent
    bad = []
    for name, ch, rate in (("stereo.wav", 2, 16000), ("rate.wav", 1, 8000)):
        with wave.open(str(tmp_path / name), "wb") as w:
            w.setnchannels(ch), w.setsampwidth(2), w.setframerate(rate), w.writeframes(b"\0" * 3200)
        bad.append(str(tmp_path / name))
    code = ("import sys; from model.cli import main\n"
            f"for src in {bad!r}:\n"
            f"    assert main(['encode', src, {str(tmp_path / 'o.cas')!r}]) == 1\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "assert 'scipy.signal' not in sys.modules, 'scipy.signal imported'\n")
    r = _run_fresh(code, root)
    assert r.stderr.count("cascade: error: ") == 2 and not (tmp_path / "o.cas").exists()
