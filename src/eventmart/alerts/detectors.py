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
  (zeros of a never-negative metric are rest, not stuck).
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

import warnings
from dataclasses import dataclass

import bottleneck as bn
import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

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

_MAD = 1.4826  # MAD to standard deviation for normal data

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


def _shift1(x: np.ndarray) -> np.ndarray:
    return np.vstack([np.full((1, x.shape[1]), np.nan), x[:-1]])


def _moving(fn, x: np.ndarray, window: int, min_count: int) -> np.ndarray:
    """bottleneck's moving ``fn`` over ``window`` buckets up to t, also when the series is shorter than the window
    (its start is padded with NaN): a window clipped to the series' length would make a bucket's value depend on
    how many buckets follow it."""
    window = max(1, window)
    T = x.shape[0]
    if window <= T:
        return fn(x, window, min_count=min(min_count, window), axis=0)
    pad = np.vstack([np.full((window - T, x.shape[1]), np.nan), x])
    return fn(pad, window, min_count=min(min_count, window), axis=0)[window - T:]


def _rolling_median(x: np.ndarray, n: int, min_periods: int) -> np.ndarray:
    """Median of the ``n`` buckets before each bucket (NaN-aware, at least ``min_periods`` values)."""
    return _moving(bn.move_median, _shift1(np.asarray(x, dtype=float)), n, min_periods)


def _centred_median(x: np.ndarray, h: int) -> np.ndarray:
    """Median of buckets t-h .. t+h (NaN for the last h: only ever read a period later, through a lag)."""
    if h == 0:
        return x
    r = _moving(bn.move_median, x, 2 * h + 1, 1)
    out = np.full_like(x, np.nan)
    out[: max(0, len(x) - h)] = r[h:]  # r[j] is centred on j - h
    return out


def _run_length(flag: np.ndarray) -> np.ndarray:
    """How many buckets in a row, up to and including t, ``flag`` has held (0 where it does not)."""
    T = flag.shape[0]
    t = np.arange(T)[:, None]
    last_off = np.maximum.accumulate(np.where(flag, -1, t), axis=0)
    return np.where(flag, t - last_off, 0)


def _auto_pass(x: np.ndarray, hist: np.ndarray, period: int, counts_mask: np.ndarray, typical: np.ndarray,
               p: dict) -> tuple[np.ndarray, ...]:
    """(expected, spread, standard deviation of the residuals) for every bucket of ``x``, from the buckets of
    ``hist`` before it (``x`` with the anomalies found so far left out: an incident does not teach the model)."""
    n = p["n"]
    short = max(3, n // 4)
    level = _rolling_median(hist, n, max(3, n // 2))
    expected = level
    nonneg = counts_mask | _seen_nonnegative(x)
    if period > 1:
        # the same time on earlier days; at a fine grain smoothed over the neighbouring buckets (a minute's
        # value a day ago is one noisy number; a quarter-hour around it is a level)
        h = max(0, period // 192)
        sm = _centred_median(hist, h)
        refs = np.stack([_lagged(sm, i * period) for i in range(1, p["k"] + 1)])  # NaN before a lag's first day
        seasonal = _quiet(_nanmedian, refs, axis=0)
        # the seasonal shape moved to the recent level: by ratio for metrics that are never negative (a weekend
        # or a release scales every hour alike), by difference otherwise
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(seasonal > 0, hist / seasonal, np.nan)
        ratio = np.clip(_rolling_median(ratio, n // 2, short), 0.05, 20)
        moved = seasonal * np.where(np.isnan(ratio), 1.0, ratio)
        if not nonneg.all():
            diff = _rolling_median(hist - seasonal, n // 2, short)
            moved = np.where(nonneg, moved, seasonal + np.where(np.isnan(diff), 0.0, diff))
        # which model explained the recent past better (past errors only) decides, bucket by bucket
        day = max(n, period)
        err_level = _rolling_median(np.abs(hist - level), day, short)
        err_seas = _rolling_median(np.abs(hist - moved), day, short)
        use_seasonal = ~np.isnan(moved) & (np.isnan(err_level) | (err_seas < err_level))
        expected = np.where(use_seasonal, moved, level)
    resid = np.abs(hist - expected)
    spread = _MAD * _rolling_median(resid, 2 * n, max(6, n // 2))
    floor = p["min_spread"] * np.abs(expected)
    # counts: Poisson noise, and never less than one event (a count expected near 0 still jumps by 1 or 2)
    floor = np.where(counts_mask, np.maximum(floor, np.sqrt(np.maximum(np.abs(expected), 1.0))), floor)
    floor = np.maximum(floor, typical)
    spread = np.fmax(spread, floor)
    # the MAD ignores what a metric does now and then: a sparse metric's occasional jump (its MAD is 0), a heavy
    # tail's usual extremes. The standard deviation of past residuals over the last day (or 4n buckets) sees them.
    sd = _moving(bn.move_std, _shift1(hist - expected), max(4 * n, period), max(6, n // 2))
    return expected, np.where(spread > 0, spread, np.nan), sd


def _seen_nonnegative(x: np.ndarray) -> np.ndarray:
    """True at t while every value before t was >= 0."""
    bad = np.cumsum(~np.isnan(x) & (x < 0), axis=0)
    return np.vstack([np.ones((1, x.shape[1]), bool), (bad == 0)[:-1]])


def _auto(x: np.ndarray, grain_seconds: int, p: dict) -> tuple[np.ndarray, ...]:
    """The ``auto`` detector: (expected, lower, upper, judgeable, stuck) per bucket, from earlier buckets only."""
    T, S = x.shape
    n = p["n"]
    period = lag_buckets(p["period"], grain_seconds)
    counts = p["counts"]
    if counts is None:  # counts: never negative, always whole (over what has been seen so far)
        seen_bad = np.cumsum(~np.isnan(x) & ((x < 0) | (x != np.round(x))), axis=0)
        counts_mask = np.vstack([np.zeros((1, S), bool), (seen_bad == 0)[:-1]])
    else:
        counts_mask = np.full((T, S), bool(counts))
    # two passes: the first finds the anomalies, the second leaves them out of the history it learns from — for
    # up to n buckets in a row, after which a change that stays is the new normal and is learnt
    # a metric that never moved has no spread: half its typical step keeps its first change from scoring infinity
    typical = _rolling_median(np.abs(np.diff(np.vstack([x[:1], x]), axis=0)), 2 * n, max(6, n // 2))
    typical = np.where(np.isnan(typical), 0.0, typical * 0.5)
    expected, spread, sd = _auto_pass(x, x, period, counts_mask, typical, p)
    lower, upper = _auto_bounds(expected, spread, sd, counts_mask, p)
    with np.errstate(invalid="ignore"):
        first = (x < lower) | (x > upper)
    # ... unless anomalies are routine for this metric (more than 1% of the last day): then the model is wrong,
    # not the data, and leaving them out would only make it more wrong
    day = max(4 * n, period)  # the recent past that decides what is routine (a day, or 4n buckets)
    rate = _moving(bn.move_mean, _shift1(first.astype(float)), day, 1)
    keep_out = first & (_run_length(first) <= n) & (rate < 0.01)
    expected, spread, sd = _auto_pass(x, np.where(keep_out, np.nan, x), period, counts_mask, typical, p)
    lower, upper = _auto_bounds(expected, spread, sd, counts_mask, p)
    lower, upper = _tail_widened(x, expected, lower, upper, day)
    # stuck: the same value `stuck` buckets in a row, where the day before the run saw it change
    stuck = np.zeros((T, S), bool)
    m = p["stuck"]
    if m:
        same = np.vstack([np.zeros((1, S), bool), x[1:] == x[:-1]])
        # zero is where a metric that is never negative rests when nothing happens (a quiet night's counts, a crash
        # rate with no crashes): a run of zeros is an outage only if a fall says so, and hours of rest at night do
        # not make the day's metric one that never moves
        resting = (counts_mask | _seen_nonnegative(x)) & (x == 0)
        changes = np.where(same & resting, np.nan, (~same).astype(float))
        with np.errstate(invalid="ignore"):
            run = _moving(bn.move_sum, same.astype(float), m - 1, m - 1) >= m - 1  # m equal values: m-1 repeats
            # judged from before the run began, so the run does not argue itself away
            moved = _lagged(_moving(bn.move_mean, changes, max(n, period), n), m - 1) >= 0.5
        stuck = run & moved & ~np.isnan(x) & ~resting
    judgeable = ~np.isnan(expected) & ~np.isnan(spread)
    return expected, lower, upper, judgeable, stuck


_TAIL_LEVELS = (1.0, 1.4, 2.0, 3.0)  # how far the bounds widen, step by step, for a metric whose tails are heavy
_TAIL_ROUTINE = 3  # this many separate excursions beyond a bound within a day make it routine, not news


def _tail_widened(x: np.ndarray, expected: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                  window: int) -> tuple[np.ndarray, ...]:
    """The bounds widened where, over the last ``window`` buckets, values went beyond them routinely.

    A heavy-tailed metric (a 1-minute p99 latency, a bursty gauge) crosses ``a`` spreads several times a day with
    nothing wrong: its MAD describes the body, not the tail. Counting excursions (runs, so one incident of five
    buckets is one) beyond each widening level, the bounds take the first level that was crossed fewer than
    ``_TAIL_ROUTINE`` times in the window before t. A metric with light tails never crosses even the first
    level: its bounds stay as they are."""
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.fmax((x - expected) / (upper - expected), (expected - x) / (expected - lower))
        mult = np.full(x.shape, _TAIL_LEVELS[0])
        for j, level in enumerate(_TAIL_LEVELS[:-1]):
            out = e > level
            starts = out & ~np.vstack([np.zeros((1, x.shape[1]), bool), out[:-1]])
            seen = _moving(bn.move_sum, _shift1(starts.astype(float)), window, 1)
            mult = np.where(seen >= _TAIL_ROUTINE, _TAIL_LEVELS[j + 1], mult)
    return expected - mult * (expected - lower), expected + mult * (upper - expected)


def _auto_bounds(expected: np.ndarray, spread: np.ndarray, sd: np.ndarray, counts: np.ndarray,
                 p: dict) -> tuple[np.ndarray, ...]:
    """``a`` spreads either side (at least 0.8·a standard deviations of past residuals); for counts, also a fall of ``drop`` or more (an outage takes a share of the
    traffic, and a noisy count hides it inside a·spread) when it is beyond a/2 spreads. Not for ratios: a zero
    crash rate in a quiet bucket is good news, not an incident."""
    a = p["a"]
    half = np.fmax(a * spread, 0.8 * a * sd)
    lower, upper = expected - half, expected + half
    if p["drop"]:
        fell = np.minimum(expected * (1 - p["drop"]), expected - a / 2 * spread)
        lower = np.where(counts & (expected > 0), np.fmax(lower, fell), lower)
    return lower, upper


def bounds(x: np.ndarray, detector: str, grain_seconds: int, params: dict) -> tuple[np.ndarray, ...]:
    """(lower, upper, judgeable, expected, stuck) for every bucket of every series of ``x`` (T × S)."""
    p = check_params(detector, params)
    nothing = np.zeros_like(x, dtype=bool)
    if detector == "auto":
        expected, lower, upper, ok, stuck = _auto(x, grain_seconds, p)
        return lower, upper, ok, expected, stuck
    if detector == "iqr":
        a, n = p["a"], p["n"]
        w = _prev_windows(x, n)
        q25, q75 = _sorted_quantiles(w, (0.25, 0.75))  # NaN unless all n are present, like rolling(n)
        iqr = q75 - q25
        up, low = q75 + a * iqr, q25 - a * iqr
        m = n // 2 + 1  # the centred mean of n, seen from the newest bucket
        up = _quiet(np.nanmean, _upto_windows(up, m), axis=2)
        low = _quiet(np.nanmean, _upto_windows(low, m), axis=2)
        return low, up, iqr != 0, (low + up) / 2, nothing
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
        return center - a * spread, center + a * spread, enough & (spread > 0), center, nothing
    if detector == "pct_change":
        thr = p["threshold"]
        lag = lag_buckets(p["lag"], grain_seconds)
        ref = _lagged(x, lag)
        lo, hi = ref * (1 - thr), ref * (1 + thr)
        return np.minimum(lo, hi), np.maximum(lo, hi), ~np.isnan(ref), ref, nothing
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
        return center - a * spread, center + a * spread, enough, center, nothing
    lo = p["lower"] if p["lower"] is not None else -np.inf
    hi = p["upper"] if p["upper"] is not None else np.inf
    return np.full_like(x, lo), np.full_like(x, hi), np.ones_like(x, dtype=bool), np.full_like(x, np.nan), nothing


def detect_matrix(x: np.ndarray, detector: str, grain_seconds: int, params: dict | None = None,
                  direction: str = "both", min_history: int = DEFAULT_MIN_HISTORY) -> Judged:
    """Judge a regular (buckets × series) array; NaN is a missing bucket: never judged, skipped by the history.
    So is ±inf (a ratio over zero): it is no measurement, and one would make every bound after it infinite."""
    x = np.asarray(x, dtype=float)
    x = np.where(np.isinf(x), np.nan, x)
    if direction not in DIRECTIONS:
        raise DetectorError(f"direction '{direction}' is not one of {', '.join(DIRECTIONS)}")
    low, up, ok, expected, stuck = bounds(x, detector, grain_seconds, params or {})
    if min_history and detector != "threshold":  # a static bound needs no history
        seen = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(~np.isnan(x), axis=0)[:-1]])  # values before t
        ok = ok & (seen >= min_history)
    judged = ok & ~np.isnan(x)
    above = judged & ~np.isnan(up) & (x > up)
    below = judged & ~np.isnan(low) & (x < low)
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
