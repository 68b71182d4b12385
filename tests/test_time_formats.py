"""Event times as people write them: ISO and slash dates with or without a time, offsets, month names in a declared
strptime format; a value that is no time at all becomes a reject with file, line and reason, never an aborted load."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from conftest import write_project
from eventmart import Project
from eventmart.errors import ProjectError


def _project(d: Path, rows: list[str], column_type: str, fmt: str | None = None, warehouse: dict | None = None) -> Path:
    (d / "data").mkdir(parents=True, exist_ok=True)
    (d / "data" / "t.csv").write_text("k,day,v\n" + "".join(f"{i},{r},{i}\n" for i, r in enumerate(rows)))
    time = {"column": "day", **({"format": fmt} if fmt else {})}
    return write_project(d, {"name": "t", "warehouse": warehouse or {"type": "duckdb"}, "sources": {"t": {
        "format": "csv", "path": "data/t.csv", "columns": {"k": "int", "day": column_type, "v": "int"},
        "time": time, "key": ["k"]}}})


def _loaded(d: Path) -> tuple[dict[int, datetime], list[tuple]]:
    with Project.load(d) as p:
        p.ingest("t")
        times = dict(p.query("select k, _time from t").rows)
        rejects = p.query("select line, reason from t_rejects order by line").rows
    return times, rejects


@pytest.mark.parametrize("column_type", ["string", "timestamp"])
def test_text_times_with_a_bad_value_load_the_rest(tmp_path, column_type):
    rows = ["2012-01-01", "not-a-date", "2012/01/03", "2012-01-04T10:00:00+03:00", "2012/01/05 13:30", ""]
    times, rejects = _loaded(_project(tmp_path, rows, column_type))
    assert times == {0: datetime(2012, 1, 1), 2: datetime(2012, 1, 3), 3: datetime(2012, 1, 4, 7),
                     4: datetime(2012, 1, 5, 13, 30)}
    assert [line for line, _ in rejects] == [3, 7]
    assert "not-a-date" in rejects[0][1] and "day" in rejects[0][1]
    assert "missing required value for column day" in rejects[1][1]


@pytest.mark.parametrize("column_type", ["string", "date", "timestamp"])
def test_a_declared_format_reads_month_names(tmp_path, column_type):
    rows = ["Jan 1 2000", "Feb 29 2000", "Feb 30 2000", "Dec 31 1999"]
    times, rejects = _loaded(_project(tmp_path, rows, column_type, "%b %d %Y"))
    assert times == {0: datetime(2000, 1, 1), 1: datetime(2000, 2, 29), 3: datetime(1999, 12, 31)}
    assert len(rejects) == 1 and rejects[0][0] == 4 and "Feb 30 2000" in rejects[0][1] and "%b %d %Y" in rejects[0][1]


def test_day_first_format_and_a_date_column(tmp_path):
    times, rejects = _loaded(_project(tmp_path, ["31.12.2019 23:59", "01.02.2020 00:00"], "timestamp",
                                      "%d.%m.%Y %H:%M"))
    assert times == {0: datetime(2019, 12, 31, 23, 59), 1: datetime(2020, 2, 1)} and not rejects
    times, rejects = _loaded(_project(tmp_path / "d", ["2012-01-01", "2012/01/02"], "date"))
    assert times == {0: datetime(2012, 1, 1), 1: datetime(2012, 1, 2)} and not rejects


@pytest.mark.parametrize("time, needle", [
    ({"column": "day", "unit": "ms", "format": "%Y"}, "a format is for times written as text"),
    ({"column": "day", "format": "dd/mm/yyyy"}, "is not a strptime format"),
    ({"column": "day", "format": "%Q"}, "is not a strptime format"),
])
def test_bad_formats_are_named_with_their_line(tmp_path, time, needle):
    d = _project(tmp_path, ["2012-01-01"], "string")
    import yaml

    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    cfg["sources"]["t"]["time"] = time
    if time.get("unit") == "ms":
        cfg["sources"]["t"]["columns"]["day"] = "int"
    write_project(d, cfg)
    with pytest.raises(ProjectError, match="sources.t.time.format") as e:
        Project.load(d)
    assert needle in str(e.value) and "eventmart.yml:" in str(e.value)
