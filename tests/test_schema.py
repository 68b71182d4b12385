"""The JSON Schema editors use for eventmart.yml accepts every project file eventmart writes or ships (the bundled
examples, `init`'s template and proposals) and refuses what the loader refuses by key: an unknown key, a wrong
choice, a wrong type."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from eventmart.config import json_schema
from eventmart.examples import EXAMPLES, HERE

SCHEMA = json.loads(json_schema())


def _errors(doc: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(doc)]


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_the_bundled_examples_validate(example):
    doc = yaml.safe_load((HERE / example / "eventmart.yml").read_text())
    assert _errors(json.loads(json.dumps(doc, default=str))) == []


def test_inits_files_validate_and_name_the_schema(tmp_path):
    import csv
    import subprocess
    import sys

    exe = str(Path(sys.executable).parent / "eventmart")
    f = tmp_path / "orders.csv"
    with open(f, "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["Order ID", "Created", "Region", "Amount"])
        w.writerows([[i, f"2024-03-{1 + i % 20:02d} 10:{i % 60:02d}", ["N", "S"][i % 2], f"{i}.50"] for i in range(50)])
    for d, args in ((tmp_path / "a", []), (tmp_path / "b", ["--from", str(f)]), (tmp_path / "c", ["--example", "feed"])):
        r = subprocess.run([exe, "init", str(d), *args], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        text = (d / "eventmart.yml").read_text()
        assert text.splitlines()[0] == "# yaml-language-server: $schema=eventmart.schema.json"
        assert json.loads((d / "eventmart.schema.json").read_text()) == SCHEMA
        assert _errors(json.loads(json.dumps(yaml.safe_load(text), default=str))) == [], d


@pytest.mark.parametrize("change, where", [
    (lambda c: c["marts"]["m"].update(grian="1 hour"), "marts.m"),
    (lambda c: c["sources"]["s"].update(format="xlsx"), "sources.s.format"),
    (lambda c: c["sources"]["s"]["columns"].update(ts="integer"), "sources.s.columns.ts"),
    (lambda c: c["dashboards"]["d"]["charts"]["k"].update(type="gauge"), "dashboards.d.charts.k.type"),
])
def test_mistakes_are_flagged_where_the_loader_flags_them(change, where):
    cfg = {"sources": {"s": {"format": "csv", "path": "x.csv", "columns": {"id": "int", "ts": "timestamp?"},
                             "time": {"column": "ts"}, "key": ["id"]}},
           "marts": {"m": {"from": "s", "grain": "1 hour", "dimensions": ["id", {"big": "id > 9"}],
                           "measures": {"n": "count()"}}},
           "dashboards": {"d": {"title": "x", "filters": ["time"], "charts": {"k": {"type": "kpi", "mart": "m",
                                                                                   "measure": "n"}}}}}
    assert _errors(cfg) == []
    change(cfg)
    errs = _errors(cfg)
    assert errs and any(e.startswith(where) for e in errs), errs
