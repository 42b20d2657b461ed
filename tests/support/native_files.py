"""Writers for small native dataset files (NTU `.skeleton`, Kinetics-skeleton json) that the tests make themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

NTU_BODY_INFO = "0 1 1 1 1 0 -0.2187 0.1341 2"  # the 9 values after the body id, as in real files


def ntu_text(frames: list[list[tuple[str, np.ndarray]]]) -> str:
    """The `.skeleton` text for `frames`, each a list of (body id, xyz [25, 3]) bodies."""
    out = [str(len(frames))]
    for bodies in frames:
        out.append(str(len(bodies)))
        for body_id, xyz in bodies:
            out.append(f"{body_id} {NTU_BODY_INFO}")
            out.append("25")
            for j, (x, y, z) in enumerate(xyz):
                # depthX depthY colorX colorY orientation(4) trackingState: plausible but unused values
                out.append(f"{x:.7f} {y:.7f} {z:.7f} 277.1 191.6 1036.3 519.6 -0.2 0.03 0.97 -0.05 "
                           f"{1 if j % 7 == 3 else 2}")
    return "\r\n".join(out) + "\r\n"  # the released files use CRLF line ends


def ntu_body(t: int, amplitude: float, offset: float, seed: int) -> np.ndarray:
    """`[t, 25, 3]` joint positions in metres that move with the given amplitude."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-0.5, 0.5, size=(25, 3)) + np.array([offset, 0.0, 3.0])
    phase = np.sin(np.arange(t) * 0.4)[:, None, None]
    return (base[None] + amplitude * phase * rng.uniform(0.5, 1.0, size=(1, 25, 3))).round(6)


def write_ntu(folder: Path, name: str, bodies: list[tuple[str, int, np.ndarray]], t: int) -> Path:
    """Write `folder/name.skeleton` with bodies (id, first frame, xyz [F, 25, 3]) over `t` frames."""
    frames: list[list[tuple[str, np.ndarray]]] = [[] for _ in range(t)]
    for body_id, start, xyz in bodies:
        for k, pts in enumerate(xyz):
            frames[start + k].append((body_id, pts))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.skeleton"
    path.write_text(ntu_text(frames), newline="")
    return path


def kinetics_frame(index: int, people: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    return {"frame_index": index,
            "skeleton": [{"pose": [round(float(v), 3) for v in pose.ravel()],
                          "score": [round(float(s), 3) for s in score]} for pose, score in people]}


def kinetics_person(rng: np.random.Generator, score: float) -> tuple[np.ndarray, np.ndarray]:
    """One OpenPose person: `pose [18, 2]` in 0..1 and `score [18]` (joint 17 missing: 0, 0, score 0)."""
    pose = rng.uniform(0.1, 0.9, size=(18, 2)).round(3)
    sc = np.full(18, score).round(3)
    pose[17] = 0
    sc[17] = 0
    return pose, sc


def write_kinetics(path: Path, frames: list[dict], label: str | None = "dancing", label_index: int | None = 3,
                   ) -> Path:
    obj: dict = {"data": frames}
    if label is not None:
        obj["label"] = label
    if label_index is not None:
        obj["label_index"] = label_index
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def make_ntu_folder(folder: Path) -> Path:
    """Four NTU-60 clips: two subjects (P001 train / P003 test under X-Sub), cameras 1 to 3, actions 1 and 3."""
    t = 12
    write_ntu(folder, "S001C001P001R001A001", [("72057594037931101", 0, ntu_body(t, 0.3, 0.0, 1))], t)
    write_ntu(folder, "S001C002P001R001A003", [("72057594037931102", 0, ntu_body(t, 0.3, 0.0, 2)),
                                               ("72057594037931103", 0, ntu_body(t, 0.1, 1.0, 3))], t)
    write_ntu(folder, "S002C001P003R002A003", [("72057594037931104", 0, ntu_body(t, 0.2, 0.0, 4))], t)
    write_ntu(folder, "S002C003P003R002A001", [("72057594037931105", 2, ntu_body(t - 4, 0.2, 0.0, 5))], t)
    return folder


def make_kinetics_folder(root: Path) -> Path:
    """The ST-GCN release layout: kinetics_train/, kinetics_val/ and their label indexes."""
    rng = np.random.default_rng(0)
    index: dict[str, dict] = {"train": {}, "val": {}}
    for part, vids in (("train", ["vid_a", "vid_b", "vid_c"]), ("val", ["vid_d", "vid_e"])):
        for k, vid in enumerate(vids):
            label_index, label = (0, "abseiling") if k % 2 == 0 else (2, "applauding")
            frames = [kinetics_frame(i + 1, [kinetics_person(rng, 0.8), kinetics_person(rng, 0.4)])
                      for i in range(10)]
            write_kinetics(root / f"kinetics_{part}" / f"{vid}.json", frames, label, label_index)
            index[part][vid] = {"has_skeleton": True, "label": label, "label_index": label_index}
    # A video the index lists without skeleton, as the release does for clips OpenPose found nobody in.
    write_kinetics(root / "kinetics_train" / "vid_empty.json", [], "abseiling", 0)
    index["train"]["vid_empty"] = {"has_skeleton": False, "label": "abseiling", "label_index": 0}
    for part, entries in index.items():
        (root / f"kinetics_{part}_label.json").write_text(json.dumps(entries))
    return root
