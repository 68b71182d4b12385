"""The ``auto`` detector (see detectors.py for what it does and why): a level and a seasonal model chosen by their
recent errors, a robust spread with floors, heavy tails widened step by step, stuck values, and routine excursions
that are not news. Every bound for bucket t reads earlier buckets only."""

from __future__ import annotations

import bottleneck as bn
import numpy as np

from ..config.detectors import lag_buckets
from .windows import (
    _centred_median,
    _lagged,
    _moving,
    _nanmedian,
    _quiet,
    _rolling_median,
    _run_length,
    _shift1,
)

_MAD = 1.4826  # MAD to standard deviation for normal data


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
    """The ``auto`` detector: (expected, lower, upper, judgeable, stuck, routine) per bucket, from earlier buckets
    only (routine: None when switched off)."""
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
    routine = _routine(x, expected, period, p["routine"], 2 * p["k"]) if p["routine"] and period > 1 else None
    return expected, lower, upper, judgeable, stuck, routine


_ROUTINE_SHARE = 0.5  # an earlier day's excursion counts when it went at least this share of the way


def _routine(x: np.ndarray, expected: np.ndarray, period: int, days: int, back: int) -> np.ndarray:
    """True where an excursion from the expected value at least ``_ROUTINE_SHARE`` as large, on the same side, was
    seen around the same time of day — within half an hour (six buckets at most), or a bucket — on ``days`` or more of the last ``back``
    days: a nightly batch job's CPU, a daily report's burst of traffic, a backup's dip. What happens at that time
    most days is not news, however far it is from the recent level. Excursions are measured from what was expected
    at their own time, so a daily shape the model already follows (a step at 09:00) vetoes nothing."""
    h = min(max(1, period // 48), 6)  # at most 13 buckets a day: more, and noise alone would reach that far
    with np.errstate(invalid="ignore"):
        resid = x - expected
        reach = _ROUTINE_SHARE * resid
        up = resid > 0
    # extremes of the 2h+1 residuals around t - i·period: the trailing window ending at t - i·period + h
    hi = _moving(bn.move_max, resid, 2 * h + 1, 1)
    lo = _moving(bn.move_min, resid, 2 * h + 1, 1)
    seen = np.zeros(x.shape, dtype=np.int16)
    down = ~up
    with np.errstate(invalid="ignore"):
        for i in range(1, back + 1):
            lag = i * period - h
            if lag >= len(x):
                break
            # views, not copies: bucket t against the window ending at t - lag
            seen[lag:] += (up[lag:] & (hi[:-lag] >= reach[lag:])) | (down[lag:] & (lo[:-lag] <= reach[lag:]))
    return seen >= days


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
