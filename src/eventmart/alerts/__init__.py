"""Alerts: detectors.py (judged as of each bucket), engine.py (rules, state, noise control), backtest."""

from .detectors import DetectorError, detect, incidents

__all__ = ["DetectorError", "detect", "incidents"]
