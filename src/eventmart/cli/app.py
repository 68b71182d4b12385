"""The `eventmart` command itself: the Typer app every command group registers on, and --version."""

from __future__ import annotations

from typing import Annotated

import typer

from .output import out

app = typer.Typer(
    help="eventmart: ingest event logs, build time-bucketed marts, keep them fresh.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: fast, and like the usage errors
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        out.print(f"eventmart {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """eventmart: ingest event logs, build time-bucketed marts, keep them fresh."""
