"""The one place that vets a path before a command reads or writes it.

`vet_input(path, kind)`: a regular file that can be read, within the size bound of its kind. Folders, named pipes,
device nodes, sockets, missing files and broken symbolic links are refused with one line that says what the path
is, before anything opens it (opening a FIFO blocks; reading `/dev/zero` never ends).

`vet_output(path, ...)`: a path a command may write: not under /proc or /sys, an existing one is a regular file
(or a folder where a folder is asked for), its folder exists or can be created, and it is not one of the inputs.
Commands call it for every output before they write anything, so a bad second output cannot leave the first
one half a pair.

Both raise `BadInput` (exit 2, one line naming the path) and create nothing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from models.contract.errors import BadInput

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class InputKind:
    noun: str       # "checkpoint" -> "checkpoint not found"
    expected: str   # "a checkpoint file" -> "is a directory, expected a checkpoint file"
    max_bytes: int  # larger files are refused before they are read


# The size bounds are far above any real file of the kind (NTU-120's 3D pyskl pickle is about 4 GB) and far
# below what would exhaust memory or time on a file of garbage.
INPUT_KINDS: dict[str, InputKind] = {
    "pickle": InputKind("file", "a .pkl file", 16 * GiB),
    "checkpoint": InputKind("checkpoint", "a checkpoint file", 4 * GiB),
    "state": InputKind("resume state", "a resume state file", 8 * GiB),
    "onnx": InputKind("ONNX file", "an .onnx file", 2 * GiB),
    "video": InputKind("file", "a video file", 64 * GiB),
    "cache-entry": InputKind("cache entry", "a cache entry file", 4 * GiB),
    "profile": InputKind("corruption profile", "a corruption profile .json file", 16 * MiB),
    "layout": InputKind("layout file", "a layout .json file", 16 * MiB),
    "labels": InputKind("labels CSV", "a labels .csv file", 256 * MiB),
    "config": InputKind("config file", "a .toml config file", 16 * MiB),
    "json": InputKind("file", "a .json file", 256 * MiB),
    "mat": InputKind("file", "a .mat file", 1 * GiB),
    "skeleton": InputKind("file", "a .skeleton file", 256 * MiB),
    "text": InputKind("file", "a text file", 256 * MiB),
}

# Outputs never go here: writing under /proc or /sys changes the kernel's state, not a file.
FORBIDDEN_OUTPUT_ROOTS = ("/proc", "/sys")


def file_type(mode: int) -> str:
    """What a stat mode is, in words, for messages."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "not a regular file"


def _size(n: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def vet_input(path: str | os.PathLike, kind: str) -> Path:
    """`path` as a Path when it is a readable regular file within `kind`'s size bound; BadInput otherwise."""
    spec = INPUT_KINDS[kind]
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise BadInput(f"broken symbolic link (it points to {os.readlink(p)}, which does not exist)", p) from None
        raise BadInput(f"{spec.noun} not found", p) from None
    except OSError as e:  # a path component that is a file, a loop of links, no permission on a folder
        raise BadInput(f"cannot read ({e.strerror or type(e).__name__})", p) from None
    if stat.S_ISDIR(st.st_mode):
        raise BadInput(f"is a directory, expected {spec.expected}", p)
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(f"is {file_type(st.st_mode)}, not a regular file; expected {spec.expected}", p)
    if st.st_size > spec.max_bytes:
        raise BadInput(f"{_size(st.st_size)} is over the {_size(spec.max_bytes)} limit for {spec.expected}", p)
    try:  # readable: permission, and an I/O error on the first byte (e.g. /proc/self/mem)
        with open(p, "rb") as fh:
            fh.read(1)
    except OSError as e:
        raise BadInput(f"cannot read ({e.strerror or type(e).__name__})", p) from None
    return p


def vet_output(path: str | os.PathLike, *, folder: bool = False,
               inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """`path` as a Path when a command may write it (a file, or a folder with `folder=True`); BadInput otherwise.

    Creates nothing: the checks only look, so a command can vet all its outputs before writing the first.
    """
    p = Path(path)
    real = os.path.realpath(p)
    for root in FORBIDDEN_OUTPUT_ROOTS:
        if real == root or real.startswith(root + "/"):
            raise BadInput(f"is under {root}, which holds no files to write", p)
    if os.path.lexists(p):
        try:
            st = os.stat(p)
        except OSError:
            raise BadInput("is a broken symbolic link; refusing to write through it", p) from None
        if folder and not stat.S_ISDIR(st.st_mode):
            raise BadInput(f"exists and is not a folder (it is {file_type(st.st_mode)})", p)
        if not folder and stat.S_ISDIR(st.st_mode):
            raise BadInput("is a directory, expected a file name", p)
        if not folder and not stat.S_ISREG(st.st_mode):
            raise BadInput(f"is {file_type(st.st_mode)}, not a regular file; refusing to replace it", p)
    # The nearest existing folder above: the output's folders are created there, so it must be a writable folder.
    parent = p if folder else p.parent
    probe = Path(os.path.abspath(parent))
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise BadInput(f"cannot create its folder: {probe} is not a folder", p)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BadInput(f"cannot write in {probe} (permission denied or read-only)", p)
    for inp in inputs:
        if inp is not None and _same_file(p, Path(inp)):
            raise BadInput(f"is the same file as the input {os.fspath(inp)}; refusing to overwrite it", p)
    return p


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def refuse_special(path: str | os.PathLike) -> None:
    """For the atomic writer: never rename a file over something that is not a regular file (a device node stays
    a device; `--out /dev/null` as root would otherwise replace /dev/null)."""
    p = Path(path)
    if not os.path.lexists(p):
        return
    try:
        st = os.stat(p)
    except OSError:
        raise BadInput("is a broken symbolic link; refusing to write through it", p) from None
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(f"is {file_type(st.st_mode)}, not a regular file; refusing to replace it", p)
