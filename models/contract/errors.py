"""The exception types the CLI turns into one-line messages: bad user input (exit 2), and an output that could
not be written although nothing about the input is wrong (a full disk: exit 1)."""

from __future__ import annotations

import os
import sys


def one_line(text: str) -> str:
    """`text` with every control or line-breaking character escaped (`\\n`, `\\x1b`, `\\u2028`...): a name taken
    from a file or the command line cannot add a line (a fake "Traceback") or a terminal escape to a message."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
                   for c in text)


class BadInput(Exception):
    """A user-supplied file, folder or value that cannot be used.

    The message names the file and the reason in one line: whatever it echoes (a path, a layout name, a value
    read from a file) is escaped here, once for every message.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        if path is not None:
            message = f"{os.fsdecode(path)}: {message}"
        super().__init__(one_line(message))


class WriteFailed(Exception):
    """An output could not be written completely (no space left, a quota or file-size limit) and was not
    committed. Not bad input: the same command succeeds once there is room, hence exit 1, not 2."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        if path is not None:
            message = f"{os.fspath(path)}: {message}"
        super().__init__(message)


def notice(message: str) -> None:
    """One line on stderr about a choice made for the user (never on stdout, which may carry JSON)."""
    print(f"note: {message}", file=sys.stderr, flush=True)
