"""The dev/val split of bench/real_videos/manifest.json, by source: the rule, and a check that the manifest follows it.

    python bench/real_videos/split.py [--manifest M]      # exit 1 when a clip's split is not the rule's
    python bench/real_videos/split.py --counts            # clips per label and split, groups per split

The rule (made once, before any model was run on the new clips):
1. A source group is one repository (`group`); every clip of a group is on the same side.
2. Groups collected as unlabeled material (every clip `unlabeled`) stay `unlabeled`: never dev, never val.
3. Groups in the manifest's `dev_only` list go to `dev`: the project looked at them before this split (the 41
   clips of bench/real_clips.json, which chose between model re-makes, and the videos of ../shared/data).
4. The other groups are taken in the order of the batch they were collected in (`batch`: a later batch never
   moves a group of an earlier one), then of the sha256 of their name, and each goes to the side where the
   label counts stay closest to half and half: the side that gives the smaller sum, over labels (the 15
   classes and `other`), of |dev count - val count| / (dev count + val count) after adding the group; a tie
   goes to `dev` when the hash's first hex digit is even, else to `val`.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter, defaultdict
from pathlib import Path

from materialise import MANIFEST, SPLITS, load_manifest  # this folder's own module (run as a script)

from models.contract.errors import BadInput


def name_hash(group: str) -> str:
    return hashlib.sha256(group.encode()).hexdigest()


def imbalance(dev: Counter, val: Counter) -> float:
    """Sum over labels of |dev count - val count| / (dev count + val count): each label weighs the same, so a
    rare class is balanced as much as `other`."""
    return sum(abs(dev[lab] - val[lab]) / (dev[lab] + val[lab]) for lab in set(dev) | set(val))


def assign(clips: list[dict], dev_only: set[str]) -> dict[str, str]:
    """The side of every group of `clips` (dicts with `group`, `label`, `split`, `batch`) by the rule above."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for c in clips:
        groups[c["group"]].append(c)
    side: dict[str, str] = {}
    count = {"dev": Counter(), "val": Counter()}
    rest = []
    for g, members in groups.items():
        if all(c["split"] == "unlabeled" for c in members):
            side[g] = "unlabeled"
        elif g in dev_only:
            side[g] = "dev"
            count["dev"].update(c["label"] for c in members)
        else:
            rest.append(g)
    for g in sorted(rest, key=lambda g: (min(c["batch"] for c in groups[g]), name_hash(g))):
        labels = Counter(c["label"] for c in groups[g])
        d, v = imbalance(count["dev"] + labels, count["val"]), imbalance(count["dev"], count["val"] + labels)
        tie = "dev" if int(name_hash(g)[0], 16) % 2 == 0 else "val"
        side[g] = "dev" if d < v else "val" if v < d else tie
        count[side[g]].update(labels)
    return side


def check(manifest: Path) -> list[str]:
    """One line per clip whose split is not the rule's (and per labelled clip inside an unlabeled group)."""
    doc, clips = load_manifest(manifest)
    side = assign(clips, set(doc.get("dev_only", [])))
    bad = []
    for c in clips:
        want = side[c["group"]]
        if c["split"] != want:
            bad.append(f"{c['file']}: split {c['split']}, the rule gives {want}")
    return bad


def counts(clips: list[dict]) -> str:
    """A markdown table of clips per label and split, and the number of source groups per split."""
    n = Counter((c["label"], c["split"]) for c in clips)
    groups = {s: len({c["group"] for c in clips if c["split"] == s}) for s in SPLITS}
    rows = ["| label | dev | val | unlabeled |", "|---|---|---|---|"]
    for lab in sorted({c["label"] for c in clips}, key=lambda x: (x in ("other", "unlabeled"), x)):
        rows.append(f"| {lab} | {n[lab, 'dev']} | {n[lab, 'val']} | {n[lab, 'unlabeled']} |")
    tot = Counter(c["split"] for c in clips)
    rows.append(f"| **all** | {tot['dev']} | {tot['val']} | {tot['unlabeled']} |")
    rows.append(f"| source groups | {groups['dev']} | {groups['val']} | {groups['unlabeled']} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--counts", action="store_true", help="print clips per label and split instead")
    args = ap.parse_args(argv)
    if args.counts:
        print(counts(load_manifest(args.manifest)[1]))
        return 0
    bad = check(args.manifest)
    for b in bad:
        print(b)
    print("the manifest follows the split rule" if not bad else f"{len(bad)} clips off the rule")
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BadInput as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
