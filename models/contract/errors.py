"""The one exception type for bad user input: the CLI turns it into a one-line message and exit code 2."""

from __future__ import annotations

import os
import sys


class BadInput(Exception):
    """A user-supplied file, folder or value that cannot be used.

    The message should name the file and the reason in one line.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        if path is not None:
            message = f"{os.fspath(path)}: {message}"
        super().__init__(message)


def notice(message: str) -> None:
    """One line on stderr about a choice made for the user (never on stdout, which may carry JSON)."""
    print(f"note: {message}", file=sys.stderr, flush=True)
