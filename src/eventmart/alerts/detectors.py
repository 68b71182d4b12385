"""Anomaly detectors. Every bucket is judged as of its own time: its bounds use only earlier buckets.

The public entry for notebooks is :func:`detect` (a pandas Series with a DatetimeIndex in, a frame of
value / lower / upper / anomalous out). The engine and the backtest call :func:`detect_matrix` on a
(buckets × series) array, so thousands of series cost one vectorised pass.

- ``iqr`` is seed 002's ``check_anomaly``: quartiles of the ``n`` buckets before, bounds
  ``q25 - a·IQR`` / ``q75 + a·IQR``, smoothed with a centred rolling mean of ``n`` — which, judged at
  the newest bucket, averages only that bucket and the ``n//2`` before it — and no alert while IQR = 0.
- ``zscore`` / ``mad``: mean ± a·std or median ± a·1.4826·MAD of the ``n`` buckets before.
- ``pct_change``: more than ``threshold`` away from the bucket ``lag`` earlier (1 bucket, 1 day, 1 week).
- ``seasonal``: median ± a·1.4826·MAD of the same time of day over the last ``k`` periods (days or weeks),
  the spread floored at ``min_spread``·median and, with ``counts: true``, at √median (Poisson noise).
- ``threshold``: static ``lower`` / ``upper``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

DETECTORS = ("iqr", "zscore", "mad", "pct_change", "seasonal", "threshold")
_MAD = 1.4826  # MAD to standard deviation for normal data


@dataclass
class Judged:
    """Per bucket and series: the bounds in force and the verdict."""

    lower: np.ndarray
    upper: np.ndarray
    anomalous: np.ndarray


def _prev_windows(x: np.ndarray, n: int) -> np.ndarray:
    """For each bucket t, the n buckets before it: shape (T, S, n); NaN where history is short."""
    pad = np.full((n, x.shape[1]), np.nan)
    return sliding_window_view(np.vstack([pad, x]), n, axis=0)[:-1]


def _upto_windows(x: np.ndarray, m: int) -> np.ndarray:
    """For each bucket t, buckets t-m+1 .. t: shape (T, S, m)."""
    pad = np.full((m - 1, x.shape[1]), np.nan)
    return sliding_window_view(np.vstack([pad, x]), m, axis=0)


def _lagged(x: np.ndarray, lag: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    if 0 < lag < len(x):
        out[lag:] = x[:-lag]
    return out


def _sorted_quantiles(w: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """Linear-interpolated quantiles over the last axis, NaN unless the whole window is present
    (pandas' rolling(n).quantile); one sort serves every q, much faster than np.quantile on views."""
    n = w.shape[-1]
    srt = np.sort(w, axis=-1)
    full = ~np.isnan(srt[..., -1])  # NaN sorts last: the window is full iff the last is a number
    out = []
    for q in qs:
        pos = q * (n - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, n - 1)
        val = srt[..., lo] + (pos - lo) * (srt[..., hi] - srt[..., lo])
        out.append(np.where(full, val, np.nan))
    return out


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    """Median ignoring NaN along ``axis`` (NaN where all are), via one sort."""
    a = np.moveaxis(a, axis, -1)
    srt = np.sort(a, axis=-1)
    cnt = np.sum(~np.isnan(srt), axis=-1)
    lo = np.clip((cnt - 1) // 2, 0, None)[..., None]
    hi = np.clip(cnt // 2, 0, None)[..., None]
    med = (np.take_along_axis(srt, lo, -1) + np.take_along_axis(srt, hi, -1))[..., 0] / 2
    return np.where(cnt > 0, med, np.nan)


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows are expected at the start
        return fn(*a, **k)


def bounds(x: np.ndarray, detector: str, grain_seconds: int, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, judgeable) for every bucket of every series of ``x`` (T × S)."""
    p = dict(params)
    if detector == "iqr":
        a, n = float(p.get("a", 4)), int(p.get("n", 5))
        w = _prev_windows(x, n)
        q25, q75 = _sorted_quantiles(w, (0.25, 0.75))  # NaN unless all n are present, like rolling(n)
        iqr = q75 - q25
        up, low = q75 + a * iqr, q25 - a * iqr
        m = n // 2 + 1  # the centred mean of n, seen from the newest bucket
        up = _quiet(np.nanmean, _upto_windows(up, m), axis=2)
        low = _quiet(np.nanmean, _upto_windows(low, m), axis=2)
        return low, up, iqr != 0
    if detector in ("zscore", "mad"):
        a, n = float(p.get("a", 3 if detector == "zscore" else 3.5)), int(p.get("n", 20))
        w = _prev_windows(x, n)
        if detector == "zscore":
            center, spread = _quiet(np.mean, w, axis=2), _quiet(np.std, w, axis=2, ddof=1)
        else:
            (center,) = _sorted_quantiles(w, (0.5,))
            (mad,) = _sorted_quantiles(np.abs(w - center[..., None]), (0.5,))
            spread = _MAD * mad
        return center - a * spread, center + a * spread, spread > 0
    if detector == "pct_change":
        thr = float(p.get("threshold", 0.3))
        lag = lag_buckets(p.get("lag", "1 bucket"), grain_seconds)
        ref = _lagged(x, lag)
        lo, hi = ref * (1 - thr), ref * (1 + thr)
        return np.minimum(lo, hi), np.maximum(lo, hi), ~np.isnan(ref)
    if detector == "seasonal":
        a, k = float(p.get("a", 3)), int(p.get("k", 7))
        period = lag_buckets(p.get("period", "1 day"), grain_seconds)
        refs = np.stack([_lagged(x, i * period) for i in range(1, k + 1)])  # (k, T, S)
        enough = np.sum(~np.isnan(refs), axis=0) >= int(p.get("min_periods", 3))
        center = _nanmedian(refs, axis=0)
        spread = _MAD * _nanmedian(np.abs(refs - center[None]), axis=0)
        # a floor on the spread: a perfectly regular history must not make every wiggle an anomaly;
        # for counts, at least Poisson noise (sqrt of the expected count) — small night-time counts wobble
        spread = np.maximum(spread, float(p.get("min_spread", 0.05)) * np.abs(center))
        if p.get("counts"):
            spread = np.maximum(spread, np.sqrt(np.abs(center)))
        return center - a * spread, center + a * spread, enough
    if detector == "threshold":
        lo = float(p["lower"]) if p.get("lower") is not None else -np.inf
        hi = float(p["upper"]) if p.get("upper") is not None else np.inf
        return np.full_like(x, lo), np.full_like(x, hi), np.ones_like(x, dtype=bool)
    raise ValueError(f"unknown detector '{detector}'; use one of {', '.join(DETECTORS)}")


_LAG_UNITS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}


def lag_buckets(lag: str | int, grain_seconds: int) -> int:
    """'1 bucket', '1 day', '2 weeks' -> a number of buckets at this grain."""
    if isinstance(lag, int):
        return lag
    parts = str(lag).split()
    num = int(parts[0]) if parts and parts[0].isdigit() else 1
    unit = parts[-1].rstrip("s") if parts else "bucket"
    if unit == "bucket":
        return num
    if unit not in _LAG_UNITS:
        raise ValueError(f"'{lag}' is not a lag; use e.g. '1 bucket', '1 day', '1 week'")
    return max(1, num * _LAG_UNITS[unit] // grain_seconds)


def detect_matrix(x: np.ndarray, detector: str, grain_seconds: int, params: dict | None = None,
                  direction: str = "both", min_history: int = 0) -> Judged:
    x = np.asarray(x, dtype=float)
    low, up, ok = bounds(x, detector, grain_seconds, params or {})
    if min_history:
        seen = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(~np.isnan(x), axis=0)[:-1]])  # values before t
        ok = ok & (seen >= min_history)
    valid = ok & ~np.isnan(x)
    above = valid & ~np.isnan(up) & (x > up)
    below = valid & ~np.isnan(low) & (x < low)
    anomalous = {"up": above, "down": below}.get(direction, above | below)
    return Judged(low, up, anomalous)


def detect(series: pd.Series, detector: str = "iqr", direction: str = "both", min_history: int = 0,
           grain: str | None = None, **params) -> pd.DataFrame:
    """Judge each bucket of ``series`` (a DatetimeIndex at a fixed grain) as of its own time.

    >>> detect(views_15min, "iqr", a=4, n=5)          # value, lower, upper, anomalous per bucket
    """
    if not isinstance(series.index, pd.DatetimeIndex):
        raise TypeError("detect() needs a Series with a DatetimeIndex")
    if grain is None:
        step = series.index.to_series().diff().dropna().min()
        grain_seconds = int(step.total_seconds()) if pd.notna(step) else 60
    else:
        from ..timeutil import parse_duration

        grain_seconds = parse_duration(grain)
    j = detect_matrix(series.to_numpy(dtype=float)[:, None], detector, grain_seconds, params, direction, min_history)
    return pd.DataFrame({"value": series.to_numpy(dtype=float), "lower": j.lower[:, 0], "upper": j.upper[:, 0],
                         "anomalous": j.anomalous[:, 0]}, index=series.index)


def incidents(anomalous: np.ndarray, times: list, for_buckets: int = 1) -> list[tuple[int, int]]:
    """(first, last+1) bucket indexes of each incident: ``for_buckets`` anomalous in a row start one,
    the first normal bucket ends it — the live engine's state machine, over runs of anomalous buckets."""
    a = np.concatenate([[False], np.asarray(anomalous, dtype=bool), [False]])
    edges = np.flatnonzero(a[1:] != a[:-1])
    starts, ends = edges[0::2], edges[1::2]
    keep = (ends - starts) >= for_buckets
    return list(zip(starts[keep].tolist(), ends[keep].tolist(), strict=True))
