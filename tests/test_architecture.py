"""The house keeps its shape: imports go one way down the layers (lazy and TYPE_CHECKING ones included), features
never import each other, there is no import circle, and no module grows past what a newcomer reads in one sitting.
docs/architecture.md draws the same layers."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "eventmart"
# bottom to top; a module may import its own layer's package and anything below it
LAYERS = [
    ("ground floor", {"errors", "memo", "timeutil", "values"}),
    ("measure expressions (sqlglot only)", {"expressions"}),
    ("the project file", {"config"}),
    ("engines", {"warehouse"}),
    ("the measure layer, the run ledger, raw tables, user SQL, the workspace", {"measures", "ledger", "rawtables",
                                                                               "usersql", "workspace"}),
    ("sending", {"delivery"}),
    ("features", {"sources", "marts", "vault", "dashboards", "reports", "alerts", "scaffold", "backup"}),
    ("the facade", {"project", "check", "jobs"}),
    ("shells", {"cli", "server", "airflow", "superset", "examples", "__init__", "__main__"}),
]
FEATURES = LAYERS[6][1]
MAX_LINES = 520


def _modules() -> dict[str, Path]:
    out = {}
    for f in SRC.rglob("*.py"):
        parts = list(f.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Every eventmart module each module imports, wherever the import statement stands."""
    edges: dict[str, set[str]] = {}
    for m, f in mods.items():
        pkg = m.split(".") if f.name == "__init__.py" else m.split(".")[:-1]
        deps: set[str] = set()
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(n, ast.ImportFrom):
                base = ".".join(pkg[: len(pkg) - n.level + 1] + ([n.module] if n.module else [])) if n.level \
                    else (n.module or "")
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in n.names]
            elif isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            for d in names:
                while d not in mods and "." in d:
                    d = d.rsplit(".", 1)[0]
                if d in mods and d != m and d.startswith("eventmart"):
                    deps.add(d)
        edges[m] = deps
    return edges


def _top(m: str) -> str:
    parts = m.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(m: str) -> int:
    top = _top(m)
    for i, (_, names) in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{m} is in no layer: add it to LAYERS (and docs/architecture.md)")


def test_every_import_goes_down_and_features_stay_apart():
    mods = _modules()
    wrong = []
    for m, deps in _imports(mods).items():
        for d in deps:
            lm, ld = _layer(m), _layer(d)
            if ld > lm:
                wrong.append(f"{m} -> {d} (up: {LAYERS[lm][0]} -> {LAYERS[ld][0]})")
            elif ld == lm and _top(m) != _top(d) and _top(m) in FEATURES:
                wrong.append(f"{m} -> {d} (one feature into another)")
    assert not wrong, "\n".join(sorted(wrong))


def test_there_is_no_import_circle():
    edges = _imports(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    assert not circles, "\n".join("circle: " + " <-> ".join(c) for c in circles)


def test_no_module_is_longer_than_a_sitting():
    long = {m: n for m, f in _modules().items() if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long


def test_the_checks_would_catch_a_circle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above are not vacuous: a copy of the package with one bad import fails them."""
    import shutil

    global SRC
    copy = tmp_path / "eventmart"
    shutil.copytree(SRC, copy)
    (copy / "timeutil.py").write_text((copy / "timeutil.py").read_text() + "\nfrom .project import Project  # noqa\n")
    monkeypatch.setattr(__import__(__name__), "SRC", copy)
    import pytest

    with pytest.raises(AssertionError, match="eventmart.timeutil -> eventmart.project"):
        test_every_import_goes_down_and_features_stay_apart()
    with pytest.raises(AssertionError, match="eventmart.timeutil"):
        test_there_is_no_import_circle()
