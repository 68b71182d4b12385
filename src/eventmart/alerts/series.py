"""The metric a rule watches, per bucket and series, read from the warehouse through the measure layer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from ..config import AlertRule
from ..errors import UserError
from ..measures import MeasureLayer, Query
from ..timeutil import parse_duration, parse_grain
from .detectors import PARAMS, lag_buckets

if TYPE_CHECKING:
    from ..workspace import Workspace

ALL = "all"


@dataclass
class Series:
    grain: int
    times: list[datetime]  # the regular grid of buckets, oldest first
    keys: list[str]  # one per series: "os=iOS", or "all"
    values: np.ndarray  # (T, S)
    last_row: datetime | None = None  # the newest bucket that had a row (None: no rows at all)


def rule_grain(project: Workspace, rule: AlertRule) -> int:
    if rule.grain:
        return parse_grain(rule.grain)
    return project.config.marts[rule.mart].grain_seconds


def _data_version(project: Workspace) -> tuple:
    from ..ledger import RUNS

    wh = project.warehouse
    if wh.table_columns(RUNS) is None:
        return (0, None)
    return tuple(wh.fetch(f"SELECT count(*), max(started_at) FROM {wh.q(RUNS)}").rows[0])


def load_series(project: Workspace, name: str, rule: AlertRule, start: datetime, end: datetime) -> Series:
    """The rule's metric per bucket in [start, end) (cached per data version: rules share series)."""
    key = (rule.mart, rule.measure, rule.sql, tuple(rule.by), rule.grain, rule.fill, start, end,
           _data_version(project))
    cache = project.caches.setdefault("alerts.series", {})
    if key not in cache:
        if len(cache) >= 32:
            cache.pop(next(iter(cache)))
        cache[key] = _load_series(project, name, rule, start, end)
    return cache[key]


def _load_series(project: Workspace, name: str, rule: AlertRule, start: datetime, end: datetime) -> Series:
    wh = project.warehouse
    g = rule_grain(project, rule)
    params = {"start": start, "end": end}
    if rule.sql is not None:
        table = wh.fetch_arrow(rule.sql, params)
        by = table.column_names[1:-1]
    else:
        layer = MeasureLayer(project.config, wh)
        shape = layer.shape(rule.mart)
        for d in rule.by:
            if d not in shape.dimensions:
                raise UserError(f"alerts.{name}.by: '{d}' is not a dimension of mart {rule.mart} "
                                f"({', '.join(shape.dimensions) or 'none'})")
        metric = layer.metric(rule.mart, rule.measure, f"alerts.{name}.measure")
        by = list(rule.by)
        if wh.table_columns(rule.mart) is None:
            table = None
        else:
            sql, q_params, *_ = layer.sql(Query(rule.mart, {"v": metric}, start, end, grain=g, group=by))
            dims = "".join(f", {wh.q(d)}" for d in by)
            # a double: sums of counts come back as 128-bit integers otherwise, slow to convert
            table = wh.fetch_arrow(f"SELECT bucket AS b{dims}, CAST(v AS DOUBLE PRECISION) AS v FROM ({sql}) a",
                                   q_params)
    n = int((end - start).total_seconds() // g)
    times = [start + timedelta(seconds=g * i) for i in range(n)]
    if table is None or table.num_rows == 0:
        keys = [] if by else [ALL]
        return Series(g, times, keys, np.full((n, len(keys)), 0.0 if rule.fill == "zero" else np.nan), None)
    import pyarrow as pa
    import pyarrow.compute as pc

    b = table.column(0).cast(pa.timestamp("us")).to_numpy()
    pos = ((b - np.datetime64(start, "us")) // np.timedelta64(g, "s")).astype(np.int64)
    if by:  # one key per combination of the by columns, sorted
        parts = [pc.binary_join_element_wise(f"{d}=", pc.cast(table.column(i + 1), pa.string()), "")
                 for i, d in enumerate(by)]
        label = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, ", ")
        label = pc.fill_null(label, "null")
        keys = sorted(pc.unique(label).to_pylist())
        codes = pc.index_in(label, value_set=pa.array(keys)).to_numpy(zero_copy_only=False)
    else:
        codes, keys = np.zeros(table.num_rows, dtype=np.int64), [ALL]
    values = np.full((n, len(keys)), 0.0 if rule.fill == "zero" else np.nan)
    v = table.column(table.num_columns - 1).cast(pa.float64()).to_numpy(zero_copy_only=False)
    ok = (pos >= 0) & (pos < n)
    codes = np.asarray(codes)
    values[pos[ok], codes[ok]] = v[ok]
    if rule.fill == "zero":  # before a series' first row there is no data, not zero events
        first = np.full(len(keys), n)
        np.minimum.at(first, codes[ok], pos[ok])
        values[np.arange(n)[:, None] < first[None, :]] = np.nan
    last = int(pos[ok].max()) if ok.any() else None
    return Series(g, times, keys, values, times[last] if last is not None else None)


def _key(by: list[str], values: tuple) -> str:
    return ", ".join(f"{d}={v}" for d, v in zip(by, values, strict=True)) if by else ALL


def history_seconds(rule: AlertRule, grain: int) -> int:
    """How far back a judgement looks: the rule's `history`, and at least what its detector needs."""
    need = parse_duration(rule.history)
    p = {**PARAMS[rule.detector], **rule.params}
    if rule.detector in ("iqr", "zscore", "mad", "auto"):
        need = max(need, (3 * int(p["n"]) + rule.min_history + 2) * grain)
    # the detector's own parser for its period / lag, so "2 days" or "1 week" need what they say
    if rule.detector == "seasonal":
        period = lag_buckets(p["period"], grain) * grain
        need = max(need, (int(p["k"]) + 1) * period)
    if rule.detector == "auto":
        # two passes (the second learns from what the first judged), each reaching back k periods plus its
        # windows: twice that, so a live check sees the history a backtest does
        period = lag_buckets(p["period"], grain) * grain
        one = (int(p["k"]) + 1) * period + max(4 * int(p["n"]) * grain, period) + 3 * int(p["n"]) * grain
        need = max(need, 2 * one + (rule.min_history + 2) * grain)
    if rule.detector == "pct_change":
        need = max(need, (lag_buckets(p["lag"], grain) + 1) * grain)
    return need


