"""The detectors' names and parameters, checked without numpy or pandas (the project file is checked with
these on every command, so they must be cheap to import)."""

from __future__ import annotations

from typing import Any

DETECTORS = ("auto", "iqr", "zscore", "mad", "pct_change", "seasonal", "threshold")
DIRECTIONS = ("up", "down", "both")
DEFAULT_DETECTOR = "auto"
DEFAULT_MIN_HISTORY = 12  # buckets of history before a series is judged, for rules and detect() alike
# each detector's parameters and their defaults; anything else is refused by name
PARAMS: dict[str, dict[str, Any]] = {
    "auto": {"a": 5.5, "n": 12, "k": 7, "period": "1 day", "min_spread": 0.03, "counts": None, "stuck": 12,
             "drop": 0.7, "routine": 2},
    "iqr": {"a": 4.0, "n": 5},
    "zscore": {"a": 3.0, "n": 20},
    "mad": {"a": 3.5, "n": 20},
    "pct_change": {"threshold": 0.3, "lag": "1 bucket"},
    "seasonal": {"a": 3.0, "k": 7, "period": "1 day", "min_spread": 0.05, "counts": False, "min_periods": 3},
    "threshold": {"lower": None, "upper": None},
}


class DetectorError(ValueError):
    """A detector, direction or parameter that cannot be used; the message names it and what is allowed."""


def check_params(detector: str, params: dict[str, Any], direction: str = "both") -> dict[str, Any]:
    """The detector's parameters with defaults filled in; raises :class:`DetectorError` for anything wrong."""
    if detector not in PARAMS:
        raise DetectorError(f"unknown detector '{detector}'; use one of {', '.join(DETECTORS)}")
    if direction not in DIRECTIONS:
        raise DetectorError(f"direction '{direction}' is not one of {', '.join(DIRECTIONS)}")
    allowed = PARAMS[detector]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise DetectorError(f"unknown parameter(s) {', '.join(unknown)} for detector {detector}; its parameters: "
                            f"{', '.join(allowed) or 'none'}")
    out = {**allowed, **params}
    for key in ("a", "threshold", "min_spread", "drop"):
        if key in out and out[key] is not None:
            try:
                out[key] = float(out[key])
            except (TypeError, ValueError):
                raise DetectorError(f"parameter {key} of {detector} must be a number, not {out[key]!r}") from None
            if out[key] < 0:
                raise DetectorError(f"parameter {key} of {detector} must not be negative")
    for key in ("n", "k", "min_periods", "stuck", "routine"):
        if key in out and out[key] is not None:
            if isinstance(out[key], bool) or not float(out[key]).is_integer() or int(out[key]) < 1:
                raise DetectorError(f"parameter {key} of {detector} must be a whole number of at least 1, "
                                    f"not {out[key]!r}")
            out[key] = int(out[key])
    for key in ("lower", "upper"):
        if out.get(key) is not None:
            try:
                out[key] = float(out[key])
            except (TypeError, ValueError):
                raise DetectorError(f"parameter {key} of threshold must be a number, not {out[key]!r}") from None
    if out.get("stuck") == 1:
        raise DetectorError("parameter stuck of auto must be at least 2 (a run needs two equal values), or null to "
                            "switch the stuck rule off")
    if detector == "threshold" and out["lower"] is None and out["upper"] is None:
        raise DetectorError("the threshold detector needs lower and/or upper")
    for key in ("period", "lag"):
        if key in out:
            lag_buckets(out[key], 60)  # the unit is checked now; the grain only changes the count
    return out


_LAG_UNITS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}


def lag_buckets(lag: str | int, grain_seconds: int) -> int:
    """'1 bucket', '1 day', '2 weeks' -> a number of buckets at this grain."""
    if isinstance(lag, bool):
        raise DetectorError(f"'{lag}' is not a lag; use e.g. '1 bucket', '1 day', '1 week'")
    if isinstance(lag, int):
        if lag < 1:
            raise DetectorError(f"a lag of {lag} bucket(s) is not possible; use 1 or more")
        return lag
    parts = str(lag).split()
    num = int(parts[0]) if parts and parts[0].isdigit() else 1
    unit = parts[-1].rstrip("s") if parts else "bucket"
    if unit == "bucket":
        return max(1, num)
    if unit not in _LAG_UNITS:
        raise DetectorError(f"'{lag}' is not a lag; use e.g. '1 bucket', '1 day', '1 week'")
    return max(1, num * _LAG_UNITS[unit] // grain_seconds)


