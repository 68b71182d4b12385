"""What every command shares: loading the project (or the server that holds it), the terminal and piped
output (rich, created on first use), tables, CSV and JSON with numbers as stored, long steps, options."""

from __future__ import annotations

import csv
import re
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import UserError
from ..timeutil import fmt

if TYPE_CHECKING:
    from rich.progress import Progress

    from ..project import Project


# what rich could read as markup ([bold], [/], [#fff], [@click]), an emoji code (:smile:; every name has a letter
# but four), an escape, a tab or a control character. "05:00):" is none of these
_RICH = re.compile(r"\[[A-Za-z#/@]|:\S*?[^\W\d_]\S*?:|:(?:100|1234|__1|-1)(?:-emoji|-text)?:"
                   r"|[\\\t\x00-\x08\x0b-\x1f\x7f]")


class _Console:
    """rich's Console, created on first use: `eventmart --help` and quick commands do not import rich.

    Hand ``.get()`` (the Console itself) to rich objects that use it as a context manager (Progress, Live)."""

    def __init__(self, **kw: Any):
        self.kw, self.console = kw, None

    def get(self) -> Any:
        if self.console is None:
            from rich.console import Console

            self.console = Console(**self.kw)
        return self.console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)

    def print(self, *objects: Any, **kw: Any) -> None:
        # a plain line to a pipe (cron, logs) is written as rich would write it, without importing rich: a
        # minute's `eventmart run` from cron spends no time on it. Anything rich could change goes to rich
        # (markup or emoji codes, escapes, tabs, a line to wrap, a terminal, a style).
        if self.console is None and not kw and len(objects) == 1 and isinstance(objects[0], str):
            text, stream = objects[0], sys.stderr if self.kw.get("stderr") else sys.stdout
            width = self.kw.get("width")  # set where the stream is a pipe; else rich finds it
            cells = 1 if text.isascii() else 2  # a wide character takes two columns
            if width and not stream.isatty() and not _RICH.search(text) and all(
                    len(line) * cells <= width and line == line.rstrip() for line in text.split("\n")):
                stream.write(text + "\n")
                return
        self.get().print(*objects, **kw)

    def __enter__(self) -> Any:
        return self.get().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.get().__exit__(*exc)

# piped output (scripts, logs) gets wide lines instead of tables squeezed to 80 columns
out = _Console(highlight=False, width=None if sys.stdout.isatty() else 200)

err = _Console(stderr=True, highlight=False)

ProjectOpt = Annotated[Path, typer.Option("--project", "-p",
                                          help="Project folder or its eventmart.yml (default: current folder).")]

FORMATS = ("table", "csv", "json")

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table (on a terminal), csv (with a header) or json.")]


def _format(format: str) -> str:
    if format not in FORMATS:
        raise UserError(f"--format {format}: use table, csv or json")
    return format


def _port(value: int) -> int:
    if not 0 <= value <= 65535:
        raise typer.BadParameter(f"{value} is not a port; use 1 to 65535 (0: any free port)")
    return value


def _load(project: Path, local: bool = False) -> Project:
    """The project; while `eventmart serve` owns its embedded warehouse, a proxy that asks the server."""
    from ..project import Project
    from ..warehouse import single_writer

    p = Project.load(project)
    if not local and single_writer(p.config.warehouse):
        from ..server.api import RemoteProject, running_server

        state = running_server(p.dir)
        if state is not None:
            return RemoteProject(p.dir, state, p.config)  # type: ignore[return-value]
    return p


def _cell(v: Any) -> str:
    """A value for a table on the screen: floats without binary noise (687.6, not 687.5999999999999)."""
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:
            return "NaN"
        if v == int(v) and abs(v) < 1e15:
            return f"{int(v)}"
        return f"{v:.6g}" if abs(v) < 1e-3 or abs(v) >= 1e9 else f"{round(v, 6):.6f}".rstrip("0").rstrip(".")
    if isinstance(v, datetime):
        return fmt(v) if v.microsecond == 0 else v.isoformat(sep=" ", timespec="milliseconds")
    if isinstance(v, Decimal):
        from ..values import decimal_text

        return decimal_text(v)
    return str(v)


def _show(res: Any) -> None:
    from rich.table import Table

    t = Table(*res.columns, show_lines=False)
    for r in res.rows:
        t.add_row(*(_cell(v) for v in r))
    out.print(t)


def _emit(res: Any, format: str) -> None:
    """Rows as a terminal table, CSV with a header or a JSON array of objects; numbers exactly as stored."""
    from .. import values

    if format == "table":
        _show(res)
    elif format == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(res.columns)
        w.writerows([[values.text(v) for v in r] for r in res.rows])
    else:
        sys.stdout.write(values.json_records(res.columns, res.rows) + "\n")


def _jsonable(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat(sep=" ") if isinstance(v, datetime) else v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    return v


def _num(x: Any) -> float | None:
    return None if x is None or x != x else float(x)


def _csvnum(x: Any) -> str:
    return "" if x is None or x != x else repr(float(x))


def _bytes_progress() -> Progress:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=err.get(), transient=True)


def _step(text: str) -> Any:
    """A long step: a spinner with its name on a terminal (gone when it ends), the name as a line when piped."""
    if sys.stderr.isatty():
        return err.get().status(text, spinner="dots")
    from contextlib import nullcontext

    out.print(text, markup=False, soft_wrap=True)
    return nullcontext()


def _exe() -> str:
    """How to run eventmart again from a shell: `eventmart` when it is on PATH, else its full path."""
    import shutil

    me = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    found = shutil.which("eventmart")
    if found and me and Path(found).resolve() == me:
        return "eventmart"
    if me and me.name == "eventmart":
        return str(me)
    return f"{sys.executable} -m eventmart"


def _is(e: BaseException, name: str) -> bool:
    """By class name: typer raises its vendored click's exceptions (0.29) or click's own (older releases)."""
    return any(c.__name__ == name for c in type(e).__mro__)
