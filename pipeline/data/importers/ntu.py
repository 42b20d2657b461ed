"""NTU RGB+D 60/120 (Shahroudy et al. CVPR 2016; Liu et al. TPAMI 2019): native Kinect v2 `.skeleton` files.

File name `SsssCcccPpppRrrrAaaa.skeleton`: setup, camera, performer (subject), replication, action (1-based).
File body: the frame count; per frame the body count; per body one line of 10 body values (body id first),
the joint count (25), then one line per joint of 12 values `x y z depthX depthY colorX colorY orientW orientX
orientY orientZ trackingState`. We keep the camera-space `x, y, z` (metres).

Persons: Kinect assigns each tracked body an id. Bodies are grouped by id over the clip, ranked by motion (the
summed variance of their joint coordinates over the frames they appear in, as the common NTU preprocessing does,
so that a still background "body" such as a chair loses to the actor), and placed greedily into two person slots:
a body joins the first slot whose frames it does not overlap (a track that Kinect split into two ids is glued
back together), and bodies that fit no slot are dropped. Frames where a slot is empty are zeros with score 0.
Files whose every frame has no body (NTU's known "missing skeleton" samples) are skipped and listed in the
dataset's `skipped` key.

Splits: `xsub_train/xsub_val` (official training subjects), `xview_train/xview_val` (cameras 2 and 3 train) and,
for NTU-120 data (any action above 60), `xset_train/xset_val` (even setups train). The `benchmark` argument
picks which pair is also stored as `train`/`test`, the names the rest of the pipeline uses.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.contract.errors import BadInput
from models.contract.layouts import NTU25
from models.contract.paths import vet_input
from models.contract.skeleton import Clip, SkeletonDataset
from pipeline.data.importers.base import Importer

NTU60_CLASSES = [
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup", "throw",
    "sitting down", "standing up (from sitting position)", "clapping", "reading", "writing", "tear up paper",
    "wear jacket", "take off jacket", "wear a shoe", "take off a shoe", "wear on glasses", "take off glasses",
    "put on a hat/cap", "take off a hat/cap", "cheer up", "hand waving", "kicking something",
    "reach into pocket", "hopping (one foot jumping)", "jump up", "make a phone call/answer phone",
    "playing with phone/tablet", "typing on a keyboard", "pointing to something with finger", "taking a selfie",
    "check time (from watch)", "rub two hands together", "nod head/bow", "shake head", "wipe face", "salute",
    "put the palms together", "cross hands in front (say stop)", "sneeze/cough", "staggering", "falling",
    "touch head (headache)", "touch chest (stomachache/heart pain)", "touch back (backache)",
    "touch neck (neckache)", "nausea or vomiting condition", "use a fan (with hand or paper)/feeling warm",
    "punching/slapping other person", "kicking other person", "pushing other person",
    "pat on back of other person", "point finger at the other person", "hugging other person",
    "giving something to other person", "touch other person's pocket", "handshaking",
    "walking towards each other", "walking apart from each other",
]
NTU120_EXTRA_CLASSES = [
    "put on headphone", "take off headphone", "shoot at the basket", "bounce ball", "tennis bat swing",
    "juggling table tennis balls", "hush (quite)", "flick hair", "thumb up", "thumb down", "make ok sign",
    "make victory sign", "staple book", "counting money", "cutting nails", "cutting paper (using scissors)",
    "snapping fingers", "open bottle", "sniff (smell)", "squat down", "toss a coin", "fold paper",
    "ball up paper", "play magic cube", "apply cream on face", "apply cream on hand back", "put on bag",
    "take off bag", "put something into a bag", "take something out of a bag", "open a box",
    "move heavy objects", "shake fist", "throw up cap/hat", "hands up (both hands)", "cross arms",
    "arm circles", "arm swings", "running on the spot", "butt kicks (kick backward)", "cross toe touch",
    "side kick", "yawn", "stretch oneself", "blow nose", "hit other person with something",
    "wield knife towards other person", "knock over other person (hit with body)", "grab other person's stuff",
    "shoot at other person with a gun", "step on foot", "high-five", "cheers and drink",
    "carry something with other person", "take a photo of other person", "follow other person",
    "whisper in other person's ear", "exchange things with other person", "support somebody with hand",
    "finger-guessing game (playing rock-paper-scissors)",
]
# Official cross-subject training subjects (NTU-60 paper; the NTU-120 paper extends the list to 53).
NTU60_TRAIN_SUBJECTS = frozenset({1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38})
NTU120_TRAIN_SUBJECTS = NTU60_TRAIN_SUBJECTS | {
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93,
    94, 95, 97, 98, 100, 103}
XVIEW_TRAIN_CAMERAS = frozenset({2, 3})
BENCHMARKS = ("xsub", "xview", "xset")
MAX_PERSONS = 2
NUM_JOINTS = 25

_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})", re.IGNORECASE)


def parse_name(path: Path) -> dict[str, int]:
    """Setup, camera, subject, replication and (1-based) action from an NTU file name."""
    m = _NAME.fullmatch(path.name.split(".")[0])
    if m is None:
        raise BadInput("file name is not NTU's SsssCcccPpppRrrrAaaa.skeleton", path)
    setup, camera, subject, rep, action = (int(g) for g in m.groups())
    if action < 1 or action > 120:
        raise BadInput(f"action A{action:03d} is outside NTU's A001..A120", path)
    return {"setup": setup, "camera": camera, "subject": subject, "replication": rep, "action": action}


class _Lines:
    """Line reader that knows its (1-based) line number, for errors that point at the bad line."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.splitlines()
        self.pos = 0

    def next(self, what: str) -> str:
        while self.pos < len(self.lines) and not self.lines[self.pos].strip():
            self.pos += 1  # blank lines (a trailing newline, CRLF leftovers) carry nothing
        if self.pos >= len(self.lines):
            raise BadInput(f"line {self.pos + 1}: file ends where {what} was expected (truncated?)", self.path)
        self.pos += 1
        return self.lines[self.pos - 1]

    def count(self, what: str, limit: int) -> int:
        line = self.next(what).strip()
        try:
            n = int(line)
        except ValueError:
            raise BadInput(f"line {self.pos}: expected {what} (an integer), got {line[:40]!r}", self.path) from None
        if not 0 <= n <= limit:
            raise BadInput(f"line {self.pos}: {what} {n} is out of range 0..{limit}", self.path)
        return n

    def numbers(self, what: str, n: int) -> list[str]:
        parts = self.next(what).split()
        if len(parts) != n:
            raise BadInput(f"line {self.pos}: {what} has {len(parts)} values, expected {n}", self.path)
        return parts

    def table(self, what: str, rows: int, cols: int) -> np.ndarray:
        """The next `rows` lines of `cols` numbers each, as a float64 `[rows, cols]` array."""
        block = self.lines[self.pos:self.pos + rows]
        if len(block) == rows:  # fast path: one conversion for the whole block
            try:
                values = np.array(" ".join(block).split(), dtype=np.float64)
            except ValueError:
                values = None
            if values is not None and values.size == rows * cols:
                self.pos += rows
                return values.reshape(rows, cols)
        # slow path, line by line, to name the line that is wrong
        out = np.empty((rows, cols))
        for i in range(rows):
            parts = self.numbers(what, cols)
            try:
                out[i] = [float(x) for x in parts]
            except ValueError:
                raise BadInput(f"line {self.pos}: {what} holds a value that is not a number", self.path) from None
        return out


def read_skeleton_file(path: Path) -> tuple[int, list[tuple[str, np.ndarray, np.ndarray]]]:
    """Frame count and, per body id in order of appearance, `(id, frames [F], xyz [F, 25, 3])`.

    Raises BadInput naming the file and line for a truncated or malformed file.
    """
    vet_input(path, "skeleton")
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise BadInput("not an NTU .skeleton text file (non-ASCII bytes)", path) from None
    except OSError as e:
        raise BadInput(f"cannot read ({e.strerror})", path) from None
    r = _Lines(path, text)
    num_frames = r.count("the frame count", 1_000_000)
    bodies: dict[str, tuple[list[int], list[np.ndarray]]] = {}
    for t in range(num_frames):
        num_bodies = r.count(f"the body count of frame {t + 1}", 64)
        for _ in range(num_bodies):
            body_id = r.numbers("a body info line", 10)[0]
            n_joints = r.count("the joint count", 1000)
            if n_joints != NUM_JOINTS:
                raise BadInput(f"line {r.pos}: {n_joints} joints, NTU bodies have {NUM_JOINTS}", path)
            start = r.pos
            joints = r.table("a joint line", NUM_JOINTS, 12)[:, :3]
            if not np.isfinite(joints).all():
                raise BadInput(f"lines {start + 1}..{r.pos}: non-finite joint coordinates", path)
            frames, coords = bodies.setdefault(body_id, ([], []))
            if frames and frames[-1] == t:
                raise BadInput(f"line {start}: body {body_id} appears twice in frame {t + 1}", path)
            frames.append(t)
            coords.append(joints)
    return num_frames, [(b, np.array(f), np.stack(c)) for b, (f, c) in bodies.items()]


def _motion(xyz: np.ndarray) -> float:
    """Summed per-coordinate variance over the body's frames: large for an actor, ~0 for a still object."""
    return float(xyz.reshape(len(xyz), -1).var(axis=0).sum()) if len(xyz) > 1 else 0.0


def assemble_persons(num_frames: int, bodies: list[tuple[str, np.ndarray, np.ndarray]],
                     max_persons: int = MAX_PERSONS) -> tuple[np.ndarray, np.ndarray]:
    """`keypoint [M, T, 25, 3]` and `keypoint_score [M, T, 25]` from the bodies, most active first."""
    ranked = sorted(bodies, key=lambda b: -_motion(b[2]))  # stable: ties keep the order of appearance
    slots: list[list[tuple[np.ndarray, np.ndarray]]] = []
    used: list[np.ndarray] = []
    for _, frames, xyz in ranked:
        for s in range(len(slots)):
            if not used[s][frames].any():  # no overlap in time: the same person under a new id
                slots[s].append((frames, xyz))
                used[s][frames] = True
                break
        else:
            if len(slots) < max_persons:
                slots.append([(frames, xyz)])
                occupied = np.zeros(num_frames, dtype=bool)
                occupied[frames] = True
                used.append(occupied)
    kp = np.zeros((len(slots), num_frames, NUM_JOINTS, 3), dtype=np.float32)
    score = np.zeros((len(slots), num_frames, NUM_JOINTS), dtype=np.float32)
    for m, parts in enumerate(slots):
        for frames, xyz in parts:
            kp[m, frames] = xyz
            score[m, frames] = 1.0
    return kp, score


def read_ntu_clip(path: Path) -> Clip | None:
    """One clip, or None when the file holds no body at all."""
    meta = parse_name(path)
    num_frames, bodies = read_skeleton_file(path)
    if not bodies:
        return None
    kp, score = assemble_persons(num_frames, bodies)
    return Clip(path.name.split(".")[0], meta["action"] - 1, kp, score, None, fps=30.0,
                extra={k: meta[k] for k in ("setup", "camera", "subject", "replication")})


def ntu_splits(clips: list[Clip], ntu120: bool) -> dict[str, list[str]]:
    """The official benchmark splits as pyskl names them (`<benchmark>_train` / `<benchmark>_val`)."""
    subjects = NTU120_TRAIN_SUBJECTS if ntu120 else NTU60_TRAIN_SUBJECTS
    rules = {
        "xsub": lambda c: c.extra["subject"] in subjects,
        "xview": lambda c: c.extra["camera"] in XVIEW_TRAIN_CAMERAS,
    }
    if ntu120:
        rules["xset"] = lambda c: c.extra["setup"] % 2 == 0
    split: dict[str, list[str]] = {}
    for bench, is_train in rules.items():
        split[f"{bench}_train"] = [c.frame_dir for c in clips if is_train(c)]
        split[f"{bench}_val"] = [c.frame_dir for c in clips if not is_train(c)]
    return split


def import_ntu(src: str | os.PathLike, benchmark: str = "xsub", progress: bool = True) -> SkeletonDataset:
    """Read every `.skeleton` file under `src` (a folder, searched recursively, or one file)."""
    root = Path(src)
    if benchmark not in BENCHMARKS:
        raise BadInput(f"unknown NTU benchmark {benchmark!r} ({', '.join(BENCHMARKS)})")
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(root.rglob("*.skeleton"))
        if not files:
            raise BadInput("no .skeleton files in folder", root)
    else:
        raise BadInput("not found", root)
    clips: list[Clip] = []
    skipped: list[str] = []
    seen: dict[str, Path] = {}
    # Bars only on a terminal (None: off when stderr is piped); as a context manager the bar is cleared before
    # a bad-input message is printed.
    with tqdm(files, desc="ntu", unit="clip", leave=False, disable=None if progress else True) as it:
        for f in it:
            clip = read_ntu_clip(f)
            name = f.name.split(".")[0]
            if name in seen:
                raise BadInput(f"clip {name} also read from {seen[name]}", f)
            seen[name] = f
            if clip is None:
                skipped.append(name)
            else:
                clips.append(clip)
    if not clips:
        raise BadInput(f"none of the {len(files)} .skeleton files holds a body", root)
    ntu120 = max(c.label for c in clips) >= len(NTU60_CLASSES)
    if benchmark == "xset" and not ntu120:
        raise BadInput("the xset benchmark is NTU-120's (actions above A060); this data is NTU-60", root)
    classes = NTU60_CLASSES + (NTU120_EXTRA_CLASSES if ntu120 else [])
    split = ntu_splits(clips, ntu120)
    split = {"train": list(split[f"{benchmark}_train"]), "test": list(split[f"{benchmark}_val"]), **split}
    extra: dict = {"benchmark": benchmark}
    if skipped:
        extra["skipped"] = skipped
    return SkeletonDataset(clips, split, list(classes), NTU25, extra)


IMPORTER = Importer(help="a folder of NTU RGB+D `.skeleton` files (3D, 25 joints, X-Sub/X-View splits)",
                    load=import_ntu, options=("benchmark",))
