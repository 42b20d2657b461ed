"""Labels CSV (`video,label[,split]`, optional header row) shared by `dataset build` and importers that need one.

Video paths are relative to the CSV's folder. Labels are class names or integer class indices counting from 0.
"""

from __future__ import annotations

import csv
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from models.contract.errors import BadInput
from models.contract.paths import vet_input


@dataclass
class LabelRow:
    video: Path
    label: str
    split: str | None
    line: int


def read_labels(path: str | os.PathLike) -> list[LabelRow]:
    p = vet_input(path, "labels")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BadInput("labels CSV is not UTF-8 text", p) from None
    except OSError as e:  # no permission, an I/O error
        raise BadInput(f"cannot read ({e.strerror or type(e).__name__})", p) from None
    rows: list[LabelRow] = []
    reader = csv.reader(text.splitlines())
    for n in itertools.count(1):
        try:  # csv refuses a field over csv.field_size_limit() (131 072 characters): no path or label is as long
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise BadInput(f"line {reader.line_num}: not a labels CSV row ({e})", p) from None
        rec = [c.strip() for c in rec]
        if not rec or not any(rec) or rec[0].startswith("#"):
            continue
        if n == 1 and rec[0].lower() == "video":
            continue
        if len(rec) not in (2, 3) or not rec[0] or not rec[1]:
            raise BadInput(f"line {n}: expected video,label[,split], got {','.join(rec)[:200]!r}", p)
        v = Path(rec[0])
        rows.append(LabelRow(v if v.is_absolute() else p.parent / v, rec[1], rec[2] if len(rec) == 3 else None, n))
    if not rows:
        raise BadInput("labels CSV has no rows", p)
    if len({r.split is None for r in rows}) > 1:
        raise BadInput("some rows have a split column and some do not", p)
    return rows


def class_index(rows: list[LabelRow], path: str | os.PathLike | None = None) -> tuple[list[str], list[int]]:
    """The class names and each row's class index: integer labels are indices already, names are sorted."""
    labels = [r.label for r in rows]
    # numeric labels (ASCII digits: "²".isdigit() is true too) are class indices already
    if all(lab.isascii() and lab.isdigit() for lab in labels):
        big = max(labels, key=lambda lab: (len(lab.lstrip("0")), lab.lstrip("0")))
        if len(big.lstrip("0")) > 5:  # a class is named for every index below the largest: refuse absurd ones
            shown = big if len(big) <= 20 else f"{big[:12]}...({len(big)} digits)"
            raise BadInput(f"numeric label {shown} is too large to be a class index (use class names)", path)
        idx = [int(lab) for lab in labels]
        return [str(i) for i in range(max(idx) + 1)], idx
    classes = sorted(set(labels))
    return classes, [classes.index(lab) for lab in labels]


def split_of(row: LabelRow, label: int, seen_per_class: dict[int, int], test_every: int) -> str:
    """The row's own split; without one, every `test_every`-th clip of each class (counted in `seen_per_class`,
    a `defaultdict(int)` the caller keeps across rows) goes to `test`, the others to `train`."""
    if row.split is not None:
        return row.split
    k = seen_per_class[label]
    seen_per_class[label] += 1
    return "test" if k % test_every == test_every - 1 else "train"
