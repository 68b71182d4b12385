"""What a feature is handed instead of the facade: the project's folder, its configuration, its warehouse and mart
runner, the lock writers share, and caches that live as long as the project is open.

`Project` (project.py) is one; features (alerts, reports, dashboards, …) are written against this protocol and never
import the facade, so imports go one way: cli/server → project → features → measures → warehouse → config.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from .config import ProjectConfig
from .errors import UserError
from .warehouse import Warehouse


class Workspace(Protocol):
    dir: Path
    config: ProjectConfig
    lock: threading.RLock
    caches: dict[str, Any]  # a feature's own, by name (e.g. "alerts.series"), dropped when the project closes

    @property
    def warehouse(self) -> Warehouse: ...

    @property
    def runner(self) -> Any: ...  # marts.MartRunner over this warehouse

    def warehouse_for_reading(self) -> Warehouse: ...

    def located(self, e: UserError) -> UserError: ...
