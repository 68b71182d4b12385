"""Anomaly detectors. Every bucket is judged as of its own time: its bounds use only earlier buckets.

The public entry for notebooks is :func:`detect` (a pandas Series in, a frame of value / expected / lower /
upper / score / anomalous / judged out; :func:`incidents` groups the anomalous buckets). The engine and the
backtest call :func:`detect_matrix` on a regular (buckets × series) array, so thousands of series cost one
vectorised pass.

- ``auto`` (the recommended default): the expected value is the better, over the last day, of a recent robust
  level (median of the last ``n`` buckets) and a seasonal one (the same time on earlier days, shifted to the
  recent level) — so a daily cycle is followed from its second day and a level shift is learnt within ``n/2``
  buckets; the spread is the robust spread (MAD) of past residuals, floored for counts by Poisson noise and
  for any metric by ``min_spread`` of its level; bounds crossed routinely over the last day (heavy tails) widen
  step by step; a value stuck on one number for ``stuck`` buckets while the metric used to move is anomalous too
  (zeros of a never-negative metric are rest, not stuck); an excursion seen at the same time of day on ``routine``
  of the last 2·k days starts no incident (a nightly job is not news).
- ``iqr`` is the hand-written ``check_anomaly`` the feed pipeline used: quartiles of the ``n`` buckets before,
  bounds ``q25 - a·IQR`` / ``q75 + a·IQR``, smoothed with a centred rolling mean of ``n`` — which, judged at the
  newest bucket, averages only that bucket and the ``n//2`` before it — and no alert while IQR = 0.
- ``zscore`` / ``mad``: mean ± a·std or median ± a·1.4826·MAD of the ``n`` buckets before.
- ``pct_change``: more than ``threshold`` away from the bucket ``lag`` earlier (1 bucket, 1 day, 1 week).
- ``seasonal``: median ± a·1.4826·MAD of the same time of day over the last ``k`` periods (days or weeks),
  the spread floored at ``min_spread``·median and, with ``counts: true``, at √median (Poisson noise).
- ``threshold``: static ``lower`` / ``upper``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config.detectors import (
    DEFAULT_DETECTOR,
    DEFAULT_MIN_HISTORY,
    DETECTORS,
    DIRECTIONS,
    PARAMS,
    DetectorError,
    check_params,
    lag_buckets,
)
from .auto import _MAD, _auto
from .windows import _lagged, _nanmedian, _prev_windows, _quiet, _run_length, _sorted_quantiles, _upto_windows

__all__ = ["DEFAULT_DETECTOR", "DEFAULT_MIN_HISTORY", "DETECTORS", "PARAMS", "DetectorError", "Judged",
           "check_params", "detect", "detect_matrix", "incidents", "infer_grain", "lag_buckets"]

@dataclass
class Judged:
    """Per bucket and series: the bounds in force and the verdict."""

    lower: np.ndarray
    upper: np.ndarray
    anomalous: np.ndarray
    expected: np.ndarray | None = None
    score: np.ndarray | None = None  # signed distance from the expected value, in spreads (auto)
    judged: np.ndarray | None = None  # the bucket had a value and enough history to be judged


def bounds(x: np.ndarray, detector: str, grain_seconds: int, params: dict) -> tuple[np.ndarray, ...]:
    """(lower, upper, judgeable, expected, stuck, routine) for every bucket of every series of ``x`` (T × S)."""
    p = check_params(detector, params)
    nothing = np.zeros_like(x, dtype=bool)
    if detector == "auto":
        expected, lower, upper, ok, stuck, routine = _auto(x, grain_seconds, p)
        return lower, upper, ok, expected, stuck, (nothing if routine is None else routine)
    if detector == "iqr":
        a, n = p["a"], p["n"]
        w = _prev_windows(x, n)
        q25, q75 = _sorted_quantiles(w, (0.25, 0.75))  # NaN unless all n are present, like rolling(n)
        iqr = q75 - q25
        up, low = q75 + a * iqr, q25 - a * iqr
        m = n // 2 + 1  # the centred mean of n, seen from the newest bucket
        up = _quiet(np.nanmean, _upto_windows(up, m), axis=2)
        low = _quiet(np.nanmean, _upto_windows(low, m), axis=2)
        return low, up, iqr != 0, (low + up) / 2, nothing, nothing
    if detector in ("zscore", "mad"):
        a, n = p["a"], p["n"]
        w = _prev_windows(x, n)
        if detector == "zscore":
            center, spread = _quiet(np.nanmean, w, axis=2), _quiet(np.nanstd, w, axis=2, ddof=1)
            enough = np.sum(~np.isnan(w), axis=2) >= max(3, n // 2)
        else:
            (center,) = _sorted_quantiles(w, (0.5,))
            (mad,) = _sorted_quantiles(np.abs(w - center[..., None]), (0.5,))
            spread = _MAD * mad
            enough = ~np.isnan(center)
        return center - a * spread, center + a * spread, enough & (spread > 0), center, nothing, nothing
    if detector == "pct_change":
        thr = p["threshold"]
        lag = lag_buckets(p["lag"], grain_seconds)
        ref = _lagged(x, lag)
        lo, hi = ref * (1 - thr), ref * (1 + thr)
        return np.minimum(lo, hi), np.maximum(lo, hi), ~np.isnan(ref), ref, nothing, nothing
    if detector == "seasonal":
        a, k = p["a"], p["k"]
        period = lag_buckets(p["period"], grain_seconds)
        refs = np.stack([_lagged(x, i * period) for i in range(1, k + 1)])  # (k, T, S)
        enough = np.sum(~np.isnan(refs), axis=0) >= p["min_periods"]
        center = _quiet(_nanmedian, refs, axis=0)
        spread = _MAD * _quiet(_nanmedian, np.abs(refs - center[None]), axis=0)
        # a floor on the spread: a perfectly regular history must not make every wiggle an anomaly;
        # for counts, at least Poisson noise (sqrt of the expected count) — small night-time counts wobble
        spread = np.maximum(spread, p["min_spread"] * np.abs(center))
        if p["counts"]:
            spread = np.maximum(spread, np.sqrt(np.abs(center)))
        return center - a * spread, center + a * spread, enough, center, nothing, nothing
    lo = p["lower"] if p["lower"] is not None else -np.inf
    hi = p["upper"] if p["upper"] is not None else np.inf
    return (np.full_like(x, lo), np.full_like(x, hi), np.ones_like(x, dtype=bool), np.full_like(x, np.nan), nothing,
            nothing)


def detect_matrix(x: np.ndarray, detector: str, grain_seconds: int, params: dict | None = None,
                  direction: str = "both", min_history: int = DEFAULT_MIN_HISTORY) -> Judged:
    """Judge a regular (buckets × series) array; NaN is a missing bucket: never judged, skipped by the history.
    So is ±inf (a ratio over zero): it is no measurement, and one would make every bound after it infinite."""
    x = np.asarray(x, dtype=float)
    x = np.where(np.isinf(x), np.nan, x)
    if direction not in DIRECTIONS:
        raise DetectorError(f"direction '{direction}' is not one of {', '.join(DIRECTIONS)}")
    low, up, ok, expected, stuck, routine = bounds(x, detector, grain_seconds, params or {})
    if min_history and detector != "threshold":  # a static bound needs no history
        seen = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(~np.isnan(x), axis=0)[:-1]])  # values before t
        ok = ok & (seen >= min_history)
    judged = ok & ~np.isnan(x)
    above = judged & ~np.isnan(up) & (x > up) & ~routine
    below = judged & ~np.isnan(low) & (x < low) & ~routine
    if detector == "auto":  # a run goes on while the value stays most of the way out: one incident, not several
        with np.errstate(invalid="ignore"):
            k = 0.6
            above = _hysteresis(above, judged & (x > expected + k * (up - expected)))
            below = _hysteresis(below, judged & (x < expected - k * (expected - low)))
    anomalous = {"up": above, "down": below}.get(direction, above | below) | (judged & stuck)
    score = None
    if detector == "auto":
        half = (up - low) / 2
        score = np.where(judged & (half > 0), (x - expected) / np.where(half > 0, half, 1), np.nan)
    return Judged(low, up, anomalous, expected, score, judged)


def _hysteresis(start: np.ndarray, stay: np.ndarray) -> np.ndarray:
    """Anomalous where ``start`` holds, and on after it while ``stay`` holds (``start`` implies ``stay``)."""
    stay = stay | start
    t = np.arange(start.shape[0])[:, None]
    last_start = np.maximum.accumulate(np.where(start, t, -1), axis=0)
    last_break = np.maximum.accumulate(np.where(stay, -1, t), axis=0)
    return stay & (last_start > last_break)


_NICE = np.array([1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800])


def infer_grain(index: pd.DatetimeIndex, steps: int = 8) -> int | None:
    """The grain in seconds, from the first ``steps`` positive steps between timestamps only (so data added later
    never changes it; buckets before it is known are not judged): the step most of them share, or — when a
    collector's clock jitters them all apart — their median snapped to the nearest usual grain. None for fewer
    than 2 distinct times."""
    t = index.sort_values().unique()
    if len(t) < 2:
        return None
    d = (np.diff(t[: steps + 1].to_numpy()) / np.timedelta64(1, "s")).astype(float)
    d = d[d > 0]
    if not len(d):
        return None
    vals, cnt = np.unique(np.round(d, 3), return_counts=True)
    if cnt.max() >= 2 and float(vals[np.argmax(cnt)]).is_integer():
        return int(vals[np.argmax(cnt)])
    med = float(np.median(d))
    return int(_NICE[np.argmin(np.abs(np.log(_NICE) - np.log(max(med, 1.0))))])


_AGG = {"mean": "mean", "sum": "sum", "last": "last", "first": "first", "max": "max", "min": "min"}


def detect(series: pd.Series, detector: str = DEFAULT_DETECTOR, direction: str = "both",
           min_history: int = DEFAULT_MIN_HISTORY, grain: str | None = None, duplicates: str = "mean",
           missing: str = "skip", for_: int = 1, **params) -> pd.DataFrame:
    """Judge each bucket of ``series`` (a DatetimeIndex) as of its own time.

    >>> detect(views_15min)                       # the recommended detector, its defaults
    >>> detect(cpu, "mad", a=4, n=48, grain="1 minute")

    The series is put on a regular grid first: sorted, timestamps floored to ``grain`` (declared, or inferred
    from the first steps), several values in one bucket combined by ``duplicates`` (mean, sum, last, first, max,
    min), buckets without a value missing — not judged, and left out of the history (``missing="zero"`` counts
    them as 0 instead, for counts). Returns, per bucket: value, expected, lower, upper, score (auto), anomalous
    (outside the bounds), judged (had a value and enough history: False is "not judged", not "normal") and
    firing (what a rule with ``for_`` — ``for:`` in the project file — would be: on from the ``for_``-th anomalous
    bucket in a row). A bucket's verdict and bounds use only earlier buckets: data added after it never changes
    them. Bad arguments raise :class:`DetectorError` naming the argument and what is allowed.
    """
    if "for" in params:  # detect(s, **{"for": 2}), as the project file spells it
        for_ = params.pop("for")
    if isinstance(for_, bool) or not isinstance(for_, int) or for_ < 1:
        raise DetectorError(f"for_ must be a whole number of buckets, at least 1, not {for_!r}")
    p = check_params(detector, params, direction)
    if duplicates not in _AGG:
        raise DetectorError(f"duplicates='{duplicates}' is not one of {', '.join(_AGG)}")
    if missing not in ("skip", "zero"):
        raise DetectorError(f"missing='{missing}' is not one of skip, zero")
    if not isinstance(min_history, int) or min_history < 0:
        raise DetectorError(f"min_history must be a whole number of buckets, not {min_history!r}")
    if not isinstance(series, pd.Series):
        raise DetectorError("detect() takes a pandas Series with a DatetimeIndex")
    idx = series.index
    if not isinstance(idx, pd.DatetimeIndex):
        try:
            idx = pd.DatetimeIndex(idx)
        except (TypeError, ValueError):
            raise DetectorError("detect() needs a Series indexed by time (a DatetimeIndex)") from None
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    values = pd.to_numeric(pd.Series(series.to_numpy(), index=idx), errors="coerce").astype(float)
    values = values.replace([np.inf, -np.inf], np.nan)  # no measurement (a ratio over zero): missing, like NaN
    cols = ["value", "expected", "lower", "upper", "score", "anomalous", "judged", "firing"]
    values = values[~values.index.isna()]
    if grain is not None:
        from ..timeutil import parse_duration

        try:
            g = parse_duration(grain)
        except ValueError as e:
            raise DetectorError(f"grain: {e}") from None
    else:
        g = infer_grain(values.index)
    if values.empty or g is None:
        out = pd.DataFrame({c: pd.Series(dtype=float) for c in cols[:5]}, index=pd.DatetimeIndex([], name="bucket"))
        for c in cols[5:]:
            out[c] = pd.Series(dtype=bool)
        if not values.empty:  # one timestamp: nothing to compare with
            b = values.index.min()
            out = pd.DataFrame({"value": [values.iloc[0]], "expected": [np.nan], "lower": [np.nan],
                                "upper": [np.nan], "score": [np.nan], "anomalous": [False], "judged": [False],
                                "firing": [False]}, index=pd.DatetimeIndex([b], name="bucket"))
        return out
    origin = pd.Timestamp("1970-01-01")
    buckets = origin + pd.to_timedelta(((values.index - origin).total_seconds() // g).astype("int64") * g, unit="s")
    grouped = values.groupby(buckets).agg(_AGG[duplicates])
    grid = pd.date_range(grouped.index.min(), grouped.index.max(), freq=pd.Timedelta(seconds=g), name="bucket")
    v = grouped.reindex(grid)
    if missing == "zero":
        v = v.fillna(0.0)
    first_known = None
    if grain is None and detector != "threshold":  # the grain came from the first steps: earlier buckets wait
        t = values.index.sort_values().unique()
        first_known = t[min(8, len(t) - 1)]
    j = detect_matrix(v.to_numpy()[:, None], detector, g, p, direction, min_history)
    out = pd.DataFrame({"value": v.to_numpy(), "expected": j.expected[:, 0], "lower": j.lower[:, 0],
                        "upper": j.upper[:, 0],
                        "score": j.score[:, 0] if j.score is not None else np.full(len(v), np.nan),
                        "anomalous": j.anomalous[:, 0], "judged": j.judged[:, 0]}, index=grid)
    # not judged for want of history: no bounds either, so "not judged" never looks like "normal"
    if min_history and detector != "threshold":
        seen = np.concatenate([[0], np.cumsum(~np.isnan(v.to_numpy()))[:-1]])
        out.loc[seen < min_history, ["expected", "lower", "upper", "score"]] = np.nan
    if first_known is not None:
        early = out.index < first_known
        out.loc[early, ["anomalous", "judged"]] = False
        out.loc[early, ["expected", "lower", "upper", "score"]] = np.nan
    out["firing"] = _run_length(out["anomalous"].to_numpy()[:, None])[:, 0] >= for_
    return out


def incidents(anomalous: np.ndarray | pd.DataFrame | pd.Series, times: list | None = None,
              for_buckets: int = 1) -> list[tuple]:
    """Runs of anomalous buckets that last ``for_buckets`` or more: the live engine's state machine.

    Given an array, (first, last+1) bucket indexes; given :func:`detect`'s frame (or its ``anomalous``
    column), (first, last) bucket times.
    """
    if for_buckets < 1:
        raise DetectorError(f"for must be at least 1 bucket, not {for_buckets}")
    index = None
    if isinstance(anomalous, pd.DataFrame):
        anomalous = anomalous["anomalous"]
    if isinstance(anomalous, pd.Series):
        index = anomalous.index
        anomalous = anomalous.to_numpy()
    a = np.concatenate([[False], np.asarray(anomalous, dtype=bool), [False]])
    edges = np.flatnonzero(a[1:] != a[:-1])
    starts, ends = edges[0::2], edges[1::2]
    keep = (ends - starts) >= for_buckets
    pairs = list(zip(starts[keep].tolist(), ends[keep].tolist(), strict=True))
    if index is not None:
        return [(index[s], index[e - 1]) for s, e in pairs]
    return pairs
