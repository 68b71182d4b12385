"""Rolling windows over (buckets × series) arrays, NaN-aware and causal: what the detectors are built from. A
window for bucket t reads buckets up to t (or before it), never after, whatever the series' length."""

from __future__ import annotations

import warnings

import bottleneck as bn
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


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
