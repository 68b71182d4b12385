"""The `eventmart` command: parse, call the library, print. No logic lives here: every command calls one `Project`
method. A module per command group (sources, marts, alerts, ops), what they share in output.py."""

from __future__ import annotations

import importlib
import sys

from ..errors import UserError
from .app import app
from .output import _is, err

__all__ = ["app", "main"]

# each module registers its commands on the app, in the order `eventmart --help` lists them
for _group in ("sources", "marts", "ops", "alerts"):
    importlib.import_module(f"{__name__}.{_group}")


def main() -> None:
    try:
        rv = app(standalone_mode=False)
    except UserError as e:
        err.print(f"error: {e}", markup=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        if _is(e, "ClickException"):  # usage errors: the usage line and one "Error: ..." line, exit 2
            e.show()
            sys.exit(e.exit_code)
        if _is(e, "Abort"):
            sys.exit(1)
        raise
    if isinstance(rv, int) and rv:
        sys.exit(rv)
