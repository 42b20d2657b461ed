"""How long an MP4/MOV video track plays according to its edit list, read from the container's boxes.

A phone's "trim" keeps every sample of the original recording and adds an edit list (`elst`) that plays only
part of them. OpenCV's CAP_PROP_FRAME_COUNT counts all samples, while decoding honours the edit, so the frame
count alone makes such a file look truncated. Only the box headers and the `moov` box are read (a few KB), with
the standard library: no ffprobe, which a user's machine may lack.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from models.contract.errors import BadInput

MAX_EDITS = 1000  # a trim has 1 to 3 edits; a list far longer only repeats the video
SLACK, SLACK_S = 0.05, 0.1  # an edit list may play this much (relative, seconds) beyond the media: rounding
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


def _played_units(elst: bytes) -> tuple[int, int] | None:
    """(movie-timescale units the edits play, number of entries). Empty edits (media_time -1, a delay) and dwells
    (rate 0) show no new frames, so they are left out of the units."""
    if len(elst) < 8:
        return None
    version = elst[0]
    (count,) = struct.unpack_from(">I", elst, 4)
    fmt, step = (">Qqi", 20) if version == 1 else (">Iii", 12)
    if 8 + count * step > len(elst):
        return None
    total = 0
    for i in range(min(count, MAX_EDITS + 1)):  # past the bound the list is refused: no need to add it up
        duration, media_time, rate = struct.unpack_from(fmt, elst, 8 + i * step)
        if media_time >= 0 and rate != 0:
            total += duration
    return total, count


def _held_seconds(mdia: bytes) -> float | None:
    """Seconds of media the track holds: the smaller of its header's duration (`mdhd`) and the sum of its sample
    durations (`stts`), so neither alone can claim more than the samples play."""
    timescale = duration = None
    stts_units = None
    for kind, payload in _boxes(mdia):
        if kind == b"mdhd" and len(payload) >= 24:
            if payload[0] == 1 and len(payload) >= 32:
                timescale, duration = struct.unpack_from(">IQ", payload, 20)
            else:
                timescale, duration = struct.unpack_from(">II", payload, 12)
        elif kind == b"minf":
            for k, stbl in _boxes(payload):
                if k == b"stbl":
                    for k2, stts in _boxes(stbl):
                        if k2 == b"stts" and len(stts) >= 8:
                            (n,) = struct.unpack_from(">I", stts, 4)
                            if 8 + 8 * n <= len(stts):
                                stts_units = sum(c * d for c, d in struct.iter_unpack(">II", stts[8:8 + 8 * n]))
    if not timescale:
        return None
    units = [u for u in (duration, stts_units) if u is not None]
    return min(units) / timescale if units else None


def _is_video(trak: bytes) -> bool:
    for kind, mdia in _boxes(trak):
        if kind == b"mdia":
            for k, hdlr in _boxes(mdia):
                if k == b"hdlr" and len(hdlr) >= 12:
                    return hdlr[8:12] == b"vide"
    return False


@dataclass(frozen=True)
class EditList:
    """The first video track's edit list: seconds it plays, seconds of media the track holds, its entries."""

    played_s: float
    held_s: float | None
    entries: int

    def plausible(self) -> bool:
        """Plays no more than the track holds (give or take rounding), in a bounded number of edits. FFmpeg plays
        every edit, repeats included: 100 000 one-second edits over a 40-frame track decode for 28 hours."""
        fits = self.held_s is None or self.played_s <= self.held_s * (1 + SLACK) + SLACK_S
        return fits and self.entries <= MAX_EDITS


def edit_list(path: str | os.PathLike) -> EditList | None:
    """The first video track's edit list, or None: not an MP4/MOV, no edit list, or an index this reader does not
    understand (then the caller keeps the count OpenCV gives)."""
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
                held = next((_held_seconds(m) for k, m in _boxes(payload) if k == b"mdia"), None)
                for k, edts in _boxes(payload):
                    if k == b"edts":
                        for k2, elst in _boxes(edts):
                            if k2 == b"elst":
                                got = _played_units(elst)
                                return EditList(got[0] / timescale, held, got[1]) if got and got[0] else None
                return None  # the video track has no edit list: every sample plays
    except struct.error:
        return None
    return None


def edited_seconds(path: str | os.PathLike) -> float | None:
    """Seconds the first video track's edit list plays, or None (no edit list this reader understands)."""
    edits = edit_list(path)
    return edits.played_s if edits is not None else None


def check_edits(path: str | os.PathLike) -> None:
    """BadInput when the file's edit list would play more than the file holds, or has too many entries."""
    edits = edit_list(path)
    if edits is None or edits.plausible():
        return
    if edits.entries > MAX_EDITS:
        raise BadInput(f"its edit list has {edits.entries} entries (at most {MAX_EDITS}): refused, it would replay "
                       f"the video", path)
    raise BadInput(f"its edit list plays {edits.played_s:.6g} s but the video track holds {edits.held_s:.3g} s: "
                   f"refused, it would replay the video", path)
