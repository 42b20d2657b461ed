"""Hand-made MP4 edit lists: an `edts`/`elst` box put into the video track of a file OpenCV wrote (issue 24)."""

from __future__ import annotations

import struct
from pathlib import Path


def _boxes(data: bytes, start: int, end: int):
    off = start
    while off + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, off)
        yield off, size, kind
        off += size


def with_edit_list(src: Path, dst: Path, entries: int, seconds_each: float = 1.0) -> Path:
    """Copy `src` (an MP4 whose `moov` follows its media, as OpenCV writes it) to `dst` with an edit list of
    `entries` edits in place of the muxer's own list, each playing `seconds_each` s from the start of the media
    (FFmpeg plays them all, repeats included)."""
    data = bytearray(src.read_bytes())
    moov = next((o, s) for o, s, k in _boxes(data, 0, len(data)) if k == b"moov")
    mdat = next(o for o, s, k in _boxes(data, 0, len(data)) if k == b"mdat")
    assert mdat < moov[0], "the index must follow the media (no chunk offsets to move)"
    mvhd = next(o for o, s, k in _boxes(data, moov[0] + 8, sum(moov)) if k == b"mvhd")
    (timescale,) = struct.unpack_from(">I", data, mvhd + 8 + 12)
    trak = next((o, s) for o, s, k in _boxes(data, moov[0] + 8, sum(moov))
                if k == b"trak" and b"vide" in data[o:o + s])
    old = next(((o, s) for o, s, k in _boxes(data, trak[0] + 8, sum(trak)) if k == b"edts"), None)
    if old is None:  # no edit list yet: the new one goes after the track header
        tkhd = next((o, s) for o, s, k in _boxes(data, trak[0] + 8, sum(trak)) if k == b"tkhd")
        old = (sum(tkhd), 0)
    edit = struct.pack(">Iii", int(timescale * seconds_each), 0, 0x10000)
    elst = struct.pack(">I4sII", 16 + 12 * entries, b"elst", 0, entries) + edit * entries
    edts = struct.pack(">I4s", 8 + len(elst), b"edts") + elst
    data[old[0]:sum(old)] = edts  # replaces the muxer's own one-edit list, if any
    grow = len(edts) - old[1]
    struct.pack_into(">I", data, trak[0], trak[1] + grow)
    struct.pack_into(">I", data, moov[0], moov[1] + grow)
    dst.write_bytes(bytes(data))
    return dst
