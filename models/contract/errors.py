"""The one exception type for bad user input: the CLI turns it into a one-line message and exit code 2."""

from __future__ import annotations

import os


class BadInput(Exception):
    """A user-supplied file, folder or value that cannot be used.

    The message should name the file and the reason in one line.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        if path is not None:
            message = f"{os.fspath(path)}: {message}"
        super().__init__(message)
