"""The one atomic file writer: a temp file in the target's folder, fsync, rename. A crash never leaves a
half-written file under the target's name, and no output is committed that was not written completely.

The temp file is made by `tempfile.mkstemp` (O_CREAT | O_EXCL, mode 0600, an unpredictable name): it is a new
file, never one planted under the name (a symbolic link there makes mkstemp pick another name, it is not
followed). Its name is `.NAME.RANDOM.tmp` plus, for writers that pick a format from the extension (OpenCV's
video writer), the target's extension: `.out.mp4.k2j4x_9a.tmp.mp4`. `is_temp_of` recognises exactly these.

A write that fails because the disk is full (or a quota or file-size limit is hit) raises `WriteFailed`, one
line naming the target (exit 1: nothing about the input is wrong), and nothing is committed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from models.contract.errors import WriteFailed
from models.contract.paths import refuse_special

# errno values that say "there is no room for this output", not "this input is bad"
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def no_room(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in NO_ROOM


def write_failed(path: str | os.PathLike, e: OSError) -> WriteFailed:
    return WriteFailed(f"cannot write ({e.strerror or os.strerror(e.errno)}); nothing was written", path)


class AtomicFile:
    """A new temp file beside `path` (`tmp`); `commit()` fsyncs it and renames it onto `path`, `discard()`
    removes it. `ext_last`: the temp name ends in `path`'s extension (for writers that choose a format by it)."""

    def __init__(self, path: str | os.PathLike, ext_last: bool = False):
        self.path = Path(path)
        refuse_special(self.path)  # a device node, FIFO or folder at `path` is never replaced by the rename
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            ext = self.path.suffix
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp" + ext if ext_last else ".tmp",
                                       dir=self.path.parent)
        except OSError as e:
            if no_room(e):
                raise write_failed(self.path, e) from None
            raise
        os.close(fd)
        self.tmp = Path(tmp)
        os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions

    def commit(self) -> None:
        """Make the temp file `path`; any failure (fsync on a full disk included) leaves `path` as it was."""
        try:
            with open(self.tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.discard()
            raise write_failed(self.path, e) from None
        _fsync_dir(self.path.parent)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, ext_last: bool = False) -> Iterator[Path]:
    """Yield a new temporary path beside `path`; on success it is fsynced and renamed onto `path`.

    On any exception the temporary file is removed and `path` is untouched; a full disk is `WriteFailed`.
    """
    f = AtomicFile(path, ext_last)
    try:
        yield f.tmp
    except BaseException as e:
        f.discard()
        if no_room(e):
            raise write_failed(f.path, e) from None
        raise
    f.commit()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def is_temp_of(name: str, target: str) -> bool:
    """Whether file name `name` is a temp file the atomic writer made for a file named `target` (also the
    `.NAME.RANDOM.EXT.tmp` names of earlier versions)."""
    ext = re.escape(os.path.splitext(target)[1])
    pattern = re.escape(f".{target}.") + rf"[a-z0-9_]+(?:{ext})?\.tmp(?:{ext})?" if ext else \
        re.escape(f".{target}.") + r"[a-z0-9_]+\.tmp"
    return re.fullmatch(pattern, name) is not None


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files a killed writer of `path` left beside it. Only while the caller holds a lock that
    keeps every other writer of `path` out: a live writer's temp file has the same form."""
    path = Path(path)
    gone = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(path.parent):
            if is_temp_of(entry.name, path.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    gone.append(Path(entry.path))
    return gone


@contextlib.contextmanager
def new_folder(path: str | os.PathLike, keep: str | None = None) -> Iterator[Path]:
    """A folder this command makes: when the block fails, the folder is removed again if it did not exist
    before, unless it holds the file `keep` (a resumable state a later run can continue from)."""
    path = Path(path)
    existed = os.path.lexists(path)
    try:
        yield path
    except BaseException:
        if not existed and path.is_dir() and not (keep and (path / keep).is_file()):
            shutil.rmtree(path, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not supported on every platform, so best effort.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_savefig(fig, path: str | os.PathLike, dpi: int = 100) -> None:
    """Save a matplotlib figure as PNG atomically, then close it (figures hold memory until closed)."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
