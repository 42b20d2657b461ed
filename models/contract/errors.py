"""The one exception type for bad user input: the CLI turns it into a one-line message and exit code 2."""

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


def notice(message: str) -> None:
    """One line on stderr about a choice made for the user (never on stdout, which may carry JSON)."""
    print(f"note: {message}", file=sys.stderr, flush=True)
