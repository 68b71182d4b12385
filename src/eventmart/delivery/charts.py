"""A chart a message carries: a PNG with its title and file name (digests draw them, alert messages too)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Chart:
    title: str
    filename: str
    png: bytes
