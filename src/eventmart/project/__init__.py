"""The public API (the facade): ``Project.load(dir)`` and one method per CLI command, in a module per command group.

    from eventmart import Project
    with Project.load("demo/zen") as p:
        p.ingest("log_raw")
        p.run(start="2019-09-24", end="2019-09-25")
        print(p.query("select * from dash_visits limit 5").rows)
"""

from __future__ import annotations

from .alerts import AlertCommands
from .core import ProjectCore
from .marts import MartCommands
from .sources import SourceCommands

__all__ = ["Project"]


class Project(SourceCommands, MartCommands, AlertCommands, ProjectCore):
    """One project: its folder, configuration and warehouse, with a method per command (see the mixins' modules).
    Features are handed it as a :class:`~eventmart.workspace.Workspace`."""
