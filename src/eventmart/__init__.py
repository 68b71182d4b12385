"""eventmart: event logs in, time-bucketed marts out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import InputError, ProjectError, UserError

if TYPE_CHECKING:
    from .project import Project

__all__ = ["InputError", "Project", "ProjectError", "UserError"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # imported on first use: `eventmart --help` must not pay for the whole library
    if name == "Project":
        from .project import Project

        return Project
    raise AttributeError(name)
