"""Alerts: detectors.py (judged as of each bucket), engine.py (rules, state, noise control), backtest."""

from .detectors import detect

__all__ = ["detect"]
