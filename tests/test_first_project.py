"""The README's first project, typed in a terminal, on files shaped like people's own: `init --from`, `check`,
`ingest`, `backfill`, `serve`. Each proposal is checked against what the file really holds (pandas on the file, with
the time parsed the way the generator wrote it): every line in the raw table, every proposed measure equal, the
served dashboard's numbers equal."""

from __future__ import annotations

import csv
import random
import re
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pandas as pd
import pexpect
import pytest
import yaml

from terminal import spawn, typed

SHAPES = {}


def shape(fn):
    SHAPES[fn.__name__] = fn
    return fn


@shape
def date_only(rnd: random.Random) -> tuple[list[str], list[list[str]], dict]:
    """A daily weather log: one row per day, ISO dates."""
    rows = []
    for i in range(1461):
        d = datetime(2012, 1, 1) + timedelta(days=i)
        rows.append([d.strftime("%Y-%m-%d"), f"{rnd.randint(0, 300) / 10:.1f}", f"{rnd.gauss(15, 6):.1f}",
                     rnd.choice(["rain", "sun", "fog", "drizzle", "snow"])])
    return ["date", "precipitation", "temp_max", "weather"], rows, {
        "time": "date", "format": None, "parse": "%Y-%m-%d", "key": ["date"], "grain": "1 day",
        "dims": ["weather"], "numeric": ["precipitation", "temp_max"]}


@shape
def slash_dates(rnd: random.Random) -> tuple[list[str], list[list[str]], dict]:
    """Sales per region and day, slash dates, a capitalised header: no column is unique, the date and the region
    together are."""
    rows = []
    for i in range(400):
        d = datetime(2019, 1, 1) + timedelta(days=i)
        for region in ("North", "South", "East West"):
            if rnd.random() < 0.8:
                rows.append([d.strftime("%Y/%m/%d"), region, str(rnd.randint(0, 90)), f"{rnd.randint(0, 99999) / 100:.2f}"])
    return ["Date", "Region", "Units", "Revenue"], rows, {
        "time": "date", "format": None, "parse": "%Y/%m/%d", "key": ["date", "region"], "grain": "1 day",
        "dims": ["region"], "numeric": ["units", "revenue"]}


@shape
def month_names(rnd: random.Random) -> tuple[list[str], list[list[str]], dict]:
    """Readings dated like `Jan 5 2003`, in a column whose name says nothing about time."""
    rows = []
    for i in range(700):
        d = datetime(2001, 1, 1) + timedelta(days=3 * i)
        rows.append([f"{d:%b} {d.day} {d:%Y}", rnd.choice(["A-1", "B-2"]), str(rnd.randint(-50, 500))])
    return ["observed", "site", "value"], rows, {
        "time": "observed", "format": "%b %d %Y", "parse": None, "key": ["observed"], "grain": "1 day",
        "dims": ["site"], "numeric": ["value"]}


@shape
def yearly_rows(rnd: random.Random) -> tuple[list[str], list[list[str]], dict]:
    """A yearly table per country: years as integers, populations past 2^31, GDP with two decimals."""
    rows = []
    for y in range(1990, 2021):
        for c in ("Chile", "Norway", "Viet Nam"):
            rows.append([str(y), c, str(rnd.randint(3_000_000_000, 9_000_000_000)), f"{rnd.randint(0, 10**9) / 100:.2f}"])
    return ["year", "country", "population", "gdp"], rows, {
        "time": "year", "format": "%Y", "parse": "%Y", "key": ["year", "country"], "grain": "1 day",
        "dims": ["country"], "numeric": ["population", "gdp"]}


@shape
def hourly_readings(rnd: random.Random) -> tuple[list[str], list[list[str]], dict]:
    """Three sensors every hour for 20 days, ISO timestamps with a T."""
    rows = []
    for h in range(20 * 24):
        t = datetime(2024, 3, 1) + timedelta(hours=h)
        for s in ("s1", "s2", "s3"):
            rows.append([t.strftime("%Y-%m-%dT%H:%M:%S"), s, f"{rnd.gauss(21, 3):.2f}", f"{rnd.randint(200, 900) / 10:.1f}"])
    return ["timestamp", "sensor", "temperature", "humidity"], rows, {
        "time": "timestamp", "format": None, "parse": "%Y-%m-%dT%H:%M:%S", "key": ["timestamp", "sensor"],
        "grain": "1 hour", "dims": ["sensor"], "numeric": ["temperature", "humidity"]}


@shape
def dated_events(rnd: random.Random) -> tuple[list[str], list[list[str]], dict]:
    """Orders with an id, a US-style time, a user, a category and an amount: a few minutes apart over two weeks."""
    rows, t = [], datetime(2024, 3, 13, 8, 0)
    for i in range(5000):
        t += timedelta(seconds=rnd.randint(30, 400))
        rows.append([str(10_000 + i), t.strftime("%m/%d/%Y %H:%M"), str(rnd.randint(1, 700)),
                     rnd.choice(["books", "toys", "garden", "food & drink"]), f"{rnd.randint(100, 99999) / 100:.2f}"])
    return ["order_id", "created", "user_id", "category", "amount"], rows, {
        "time": "created", "format": "%m/%d/%Y %H:%M", "parse": "%m/%d/%Y %H:%M", "key": ["order_id"],
        "grain": "5 minutes", "dims": ["category"], "numeric": ["amount"]}


def _truth(header: list[str], rows: list[list[str]], spec: dict, fmt_used: str | None) -> pd.DataFrame:
    """The file as pandas reads it: text columns, the time parsed by the generator's own format."""
    from eventmart.config import normal_name

    df = pd.DataFrame(rows, columns=[normal_name(h) for h in header])
    parse = spec["parse"] or fmt_used
    df["_t"] = pd.to_datetime(df[spec["time"]], format=parse)
    return df


def _reference(df: pd.DataFrame, grain: str, dims: list[str], measures: dict[str, str]) -> dict:
    g = {"1 day": "D", "1 hour": "h", "5 minutes": "5min", "15 minutes": "15min", "1 minute": "min"}[grain]
    df = df.assign(_b=df["_t"].dt.floor(g))
    out = {}
    for key, grp in df.groupby(["_b", *dims]):
        key = key if isinstance(key, tuple) else (key,)
        row = {}
        for name, text in measures.items():
            fn, col = re.match(r"(\w+)\((\w*)\)", text).groups()
            if fn == "count":
                row[name] = len(grp)
            elif fn == "count_distinct":
                row[name] = grp[col].nunique()
            else:
                vals = [Decimal(v) for v in grp[col] if v != ""]
                row[name] = {"sum": sum(vals), "min": min(vals), "max": max(vals),
                             "avg": sum(vals) / len(vals)}[fn] if vals else None
        out[(key[0].to_pydatetime(), *key[1:])] = row
    return out


def _serve_and_read(d: Path) -> dict[str, str]:
    """`eventmart serve --port 0` in a terminal until its dashboard answers; the KPI charts' CSV; Ctrl-C."""
    child = spawn("serve", "--port", "0", cwd=d, timeout=90)
    try:
        child.expect(r"at (http://127\.0\.0\.1:\d+/)")
        url = child.match.group(1)
        page = httpx.get(url + "d/overview/", timeout=30)
        assert page.status_code == 200 and "_dash-config" in page.text
        cfg = yaml.safe_load((d / "eventmart.yml").read_text())
        kpis = {c: spec for c, spec in cfg["dashboards"]["overview"]["charts"].items() if spec["type"] == "kpi"}
        got = {c: httpx.get(f"{url}d/overview/csv/{c}", timeout=30).text.splitlines()[1] for c in kpis}
    finally:
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0, child.before
    return got


@pytest.mark.parametrize("name", list(SHAPES))
def test_first_project_in_a_terminal(tmp_path, name):
    rnd = random.Random(hash(name) % 1000)
    header, rows, spec = SHAPES[name](rnd)
    f = tmp_path / f"{name.replace('_', ' ')}.csv"
    with open(f, "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(header)
        w.writerows(rows)
    d = tmp_path / "proj"

    r = typed("init", str(d), "--from", str(f), cwd=tmp_path)
    assert r.rc == 0, r.text
    assert f"time: {spec['time']}" in r.text and "key: " in r.text
    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    (src_name, src), = cfg["sources"].items()
    (mart_name, mart), = cfg["marts"].items()
    assert src["time"]["column"] == spec["time"]
    assert src["time"].get("format") == spec["format"], src["time"]
    assert src["key"] == spec["key"]
    assert mart["grain"] == spec["grain"], (mart["grain"], r.text)
    assert mart.get("dimensions", []) == spec["dims"]
    for c in spec["numeric"]:
        assert all(f"{fn}({c})" in mart["measures"].values() for fn in ("sum", "avg", "min", "max")), mart
    for args in (["check"], ["ingest", src_name], ["backfill"]):
        r = typed(*args, cwd=d)
        assert r.rc == 0, (args, r.text)
        if args[0] == "ingest":
            assert f"{len(rows):,} loaded, 0 duplicate, 0 rejected" in r.text, r.text

    df = _truth(header, rows, spec, src["time"].get("format"))
    want = _reference(df, spec["grain"], spec["dims"], mart["measures"])
    kpis = _serve_and_read(d)

    from eventmart import Project

    with Project.load(d) as p:
        assert p.query(f"select count(*) from {src_name}").rows[0][0] == len(rows)  # every line, once
        cols = [mart.get("time_column", "dt"), *spec["dims"], *mart["measures"]]
        got_rows = p.query(f"select {', '.join(cols)} from {mart_name}").rows
    got = {tuple(r[:1 + len(spec["dims"])]): dict(zip(mart["measures"], r[1 + len(spec["dims"]):], strict=True))
           for r in got_rows}
    assert set(got) == set(want)
    for k, row in want.items():
        for m, v in row.items():
            g = got[k][m]
            if m.endswith("_avg"):
                assert abs(float(g) - float(v)) <= 1e-9 * max(1.0, abs(float(v))), (k, m, g, v)
            else:
                assert g == v, (k, m, g, v)  # counts, sums, min and max exactly
    assert Decimal(kpis["events"]) == len(rows)
    for c, text in kpis.items():
        if c.endswith("_total"):
            col = c.removesuffix("_total")
            assert Decimal(text) == sum(Decimal(v) for v in df[col] if v != ""), (c, text)
