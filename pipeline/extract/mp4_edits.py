"""How long an MP4/MOV video track plays according to its edit list, read from the container's boxes.

A phone's "trim" keeps every sample of the original recording and adds an edit list (`elst`) that plays only
part of them. OpenCV's CAP_PROP_FRAME_COUNT counts all samples, while decoding honours the edit, so the frame
count alone makes such a file look truncated. Only the box headers and the `moov` box are read (a few KB), with
the standard library: no ffprobe, which a user's machine may lack.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

MAX_MOOV_BYTES = 64 << 20  # an index far larger than this is not one we parse; the caller keeps OpenCV's count
MAX_TOP_BOXES = 4096


def _header(buf: bytes, avail: int) -> tuple[int, bytes, int] | None:
    """(size, type, header length) of the box whose first bytes are `buf`, `avail` bytes being left from its
    start (size 0: to the end); None when the header is cut or its size is smaller than the header."""
    if len(buf) < 8:
        return None
    size, kind = struct.unpack_from(">I4s", buf)
    head = 8
    if size == 1:
        if len(buf) < 16:
            return None
        size, head = struct.unpack_from(">Q", buf, 8)[0], 16
    elif size == 0:
        size = avail
    return (size, kind, head) if size >= head else None


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, payload) of the boxes in data[start:end]; stops quietly at a malformed size."""
    end = len(data) if end is None else end
    off = start
    while off + 8 <= end:
        h = _header(data[off:min(off + 16, end)], end - off)
        if h is None or off + h[0] > end:
            return
        size, kind, head = h
        yield kind, data[off + head:off + size]
        off += size


def _read_moov(fh: BinaryIO) -> bytes | None:
    """The payload of the top-level `moov` box, found by skipping from box header to box header."""
    fh.seek(0, os.SEEK_END)
    file_size = fh.tell()
    off = 0
    for _ in range(MAX_TOP_BOXES):
        fh.seek(off)
        h = _header(fh.read(16), file_size - off)
        if h is None:
            return None
        size, kind, head = h
        if kind == b"moov":
            if size > MAX_MOOV_BYTES or off + size > file_size:
                return None
            fh.seek(off + head)
            return fh.read(size - head)
        off += size
    return None


def _played_units(elst: bytes) -> int | None:
    """Movie-timescale units the edits play: empty edits (media_time -1, a delay) and dwells (rate 0) show no
    new frames, so they are left out."""
    if len(elst) < 8:
        return None
    version = elst[0]
    (count,) = struct.unpack_from(">I", elst, 4)
    fmt, step = (">Qqi", 20) if version == 1 else (">Iii", 12)
    if 8 + count * step > len(elst):
        return None
    total = 0
    for i in range(count):
        duration, media_time, rate = struct.unpack_from(fmt, elst, 8 + i * step)
        if media_time >= 0 and rate != 0:
            total += duration
    return total


def _is_video(trak: bytes) -> bool:
    for kind, mdia in _boxes(trak):
        if kind == b"mdia":
            for k, hdlr in _boxes(mdia):
                if k == b"hdlr" and len(hdlr) >= 12:
                    return hdlr[8:12] == b"vide"
    return False


def edited_seconds(path: str | os.PathLike) -> float | None:
    """Seconds the first video track's edit list plays, or None: not an MP4/MOV, no edit list, or an index
    this reader does not understand (then the caller keeps the count OpenCV gives)."""
    try:
        with open(path, "rb") as fh:
            moov = _read_moov(fh)
    except OSError:
        return None
    if moov is None:
        return None
    try:
        timescale = None
        for kind, payload in _boxes(moov):
            if kind == b"mvhd" and len(payload) >= 24:
                # version 1 has 64-bit creation/modification times before the timescale
                (timescale,) = struct.unpack_from(">I", payload, 20 if payload[0] == 1 else 12)
            elif kind == b"trak" and _is_video(payload):
                if not timescale:
                    return None
                for k, edts in _boxes(payload):
                    if k == b"edts":
                        for k2, elst in _boxes(edts):
                            if k2 == b"elst":
                                units = _played_units(elst)
                                return units / timescale if units else None
                return None  # the video track has no edit list: every sample plays
    except struct.error:
        return None
    return None
