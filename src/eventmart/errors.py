"""Errors a user can cause end as one line and exit status 2; anything else is a bug and raises."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the project file, input data or CLI arguments.

    The message is one line: what, where (file/key/line), what to do.
    """

    exit_code = 2


class ProjectError(UserError):
    """The project file is invalid."""


class InputError(UserError):
    """An input file or table cannot be used at all (rows with problems go to rejects instead)."""
