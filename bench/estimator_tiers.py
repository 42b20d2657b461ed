"""Pose estimators and tiers against each other: speed on real videos, accuracy on annotated photos and videos.

    python bench/estimator_tiers.py [--videos DIR] [--images DIR] [--json OUT.json] [--tiers heavy-hq,lite-lq]
        [--skip-photos]

Needs BlazePose lite/heavy and openpose-lite installed (`pipeline models`). Tiers (TIERS): BlazePose
heavy/full/lite in the HQ setting (per-frame detection, every frame), full/lite in the LQ setting (tracking,
every 4th frame, gaps interpolated), openpose-lite on every frame and on every 4th frame.

Speed: each tier on each video in its own child process (one thread: OMP_NUM_THREADS=1, OpenVINO 1 thread;
TFLite inside MediaPipe picks its own). CPU ms per frame = process CPU time of `estimate` (decoding included) /
video frames (skipped ones included); video frames/s = frames / wall time; ratio = the heavy HQ tier's CPU time
/ the tier's; peak RSS = the child's `ru_maxrss` (models loaded, whole video processed).

Accuracy on videos: every fast tier against BlazePose heavy HQ on the joints both layouts have (COCO-17 names):
per joint, miss rate = share of frames where heavy found the joint and the tier did not; error = median
|tier - heavy| / the clip's body size (heavy's median keypoint-box diagonal). Openpose-lite keeps 2 persons
and, per frame, the one nearer heavy's person is compared (heavy keeps one person).

People per frame (arm_wrestling, basketball): persons with at least one joint in the tracked output, for
openpose-lite (--max-persons 2) and BlazePose heavy HQ re-run with --max-persons 2; and openpose-lite's raw
persons per frame before tracking.

Accuracy on photos: PCK@0.2 on every annotated photo in ../shared/data/images (COCO-style json files and
MPII's list file): each annotated person is matched to at most one detection (greedy, nearest first); a joint
counts as correct when the annotation has it and the detection places it within 0.2 x the longer side of
the person's annotated box (keypoint extent when there is no box); unmatched persons and joints the estimator
did not find count as wrong. Only joints whose name the estimator's layout also has are scored (BlazePose has
no neck or head top; openpose-lite has a neck). BlazePose runs with max_persons = the photo's annotated persons
(it finds one person per pass; the others are re-run with the found ones greyed out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

# tier -> (estimator, BlazePose model or None, quality)
TIERS: dict[str, tuple[str, str | None, str]] = {
    "heavy-hq": ("mediapipe", "heavy", "high"),
    "full-hq": ("mediapipe", "full", "high"),
    "lite-hq": ("mediapipe", "lite", "high"),
    "full-lq": ("mediapipe", "full", "low"),
    "lite-lq": ("mediapipe", "lite", "low"),
    "openpose-lite": ("openpose-lite", None, "high"),
    "openpose-lite-lq": ("openpose-lite", None, "low"),
}
REFERENCE = "heavy-hq"
MULTI_PERSON = ("arm_wrestling.mp4", "basketball.mp4")
COCO17 = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
          "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
          "right_knee", "left_ankle", "right_ankle")
MPII16 = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
          "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
          "left_wrist")


def make(tier: str, max_persons: int = 1):
    sys.path.insert(0, str(ROOT))
    from estimators.mediapipe_pose import MODELS, MediaPipeConfig, MediaPipePose
    from estimators.openpose_lite import OpenPoseConfig, OpenPoseLite

    est, model, quality = TIERS[tier]
    if est == "mediapipe":
        return MediaPipePose(MediaPipeConfig.tier(quality, model_complexity=MODELS[model], max_persons=max_persons))
    return OpenPoseLite(OpenPoseConfig.tier(quality, max_persons=max_persons, threads=1))


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def child_video(tier: str, video: str, out: str, max_persons: int) -> None:
    """One tier on one video: timing JSON on stdout, keypoints into `out` (.npz)."""
    import mediapipe  # noqa: F401  (import cost kept out of the measurement)

    from pipeline.extract.video import VideoReader

    est = make(tier, max_persons)
    raw: list[int] = []
    if hasattr(est, "_compiled"):  # openpose-lite: count persons per frame before tracking
        detect = est.detect

        def counted(frame):
            dets = detect(frame)
            raw.append(len(dets))
            return dets

        est.detect = counted
    c0, t0 = _cpu(), time.perf_counter()
    with VideoReader(Path(video)) as r:
        res = est.estimate(r.frames(est.needs_frame), r.fps, r.img_shape)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    est.close()
    np.savez(out, keypoint=res.keypoint, keypoint_score=res.keypoint_score, raw=np.asarray(raw, np.int64))
    print(json.dumps({"tier": tier, "video": Path(video).name, "frames": res.total_frames, "wall_s": wall,
                      "cpu_s": cpu, "processed": res.timing["processed"], "layout": res.layout,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _norm_name(s: str) -> str:
    return s.strip().lower().replace(" ", "_")


def load_photo_annotations(images: Path) -> list[dict]:
    """[{image: Path, names: tuple, persons: [array [K, 3] (x, y, visible), box (x, y, w, h) or None]}]"""
    out: list[dict] = []
    for js in sorted(images.rglob("*.json")):
        try:
            data = json.loads(js.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, list) and data and isinstance(data[0], dict) and "joints" in data[0]:  # MPII
            for a in data:
                img = js.parent / a["image"]
                if img.is_file():
                    kp = np.concatenate([np.asarray(a["joints"], np.float32),
                                         np.asarray(a["joints_vis"], np.float32)[:, None]], 1)
                    out.append({"image": img, "names": MPII16, "persons": [(kp, None)], "set": js.parent.name})
            continue
        if not isinstance(data, dict) or "annotations" not in data or "categories" not in data:
            continue
        names = tuple(_norm_name(n) for n in data["categories"][0].get("keypoints", []))
        if not names or "det" in js.stem or "wholebody" in js.stem or "partition" in js.stem or "trb" in js.stem:
            continue
        roots = [js.parent, js.parent.parent, js.parents[2] if len(js.parents) > 2 else js.parent]
        for im in data["images"]:
            path = next((r / im["file_name"] for r in roots if (r / im["file_name"]).is_file()), None)
            anns = [a for a in data["annotations"] if a["image_id"] == im["id"] and a.get("keypoints")
                    and a.get("num_keypoints", 1) > 0]
            if path is None or not anns:
                continue
            persons = [(np.asarray(a["keypoints"], np.float32).reshape(-1, 3), a.get("bbox")) for a in anns]
            out.append({"image": path, "names": names, "persons": persons, "set": path.relative_to(images).parts[0]})
    seen, uniq = set(), []
    for o in out:  # posetrack's per-video files repeat the images of its summary file
        if str(o["image"]) not in seen:
            seen.add(str(o["image"]))
            uniq.append(o)
    return uniq


def child_photos(tier: str, images: str) -> None:
    """One estimator on every annotated photo: PCK@0.2 counts as JSON on stdout."""
    import cv2

    sys.path.insert(0, str(ROOT))
    from models.contract.layouts import get_layout

    photos = load_photo_annotations(Path(images))
    rows = []
    est = None
    for ph in photos:
        n_ann = len(ph["persons"])
        est = make(tier, max_persons=min(n_ann, 6) if TIERS[tier][0] == "mediapipe" else 1)
        est.begin_video()
        img = cv2.imread(str(ph["image"]))
        dets = est.detect(img)
        est.close()
        lay = get_layout(est.layout).joints
        shared = [(i, lay.index(n)) for i, n in enumerate(ph["names"]) if n in lay]
        ai = np.asarray([a for a, _ in shared])
        ei = np.asarray([e for _, e in shared])
        # Greedy matching, nearest (mean distance / person size over joints both have) first.
        people = []  # (index, keypoints, annotated joints, person size) of each person with a joint scored
        for p, (kp, box) in enumerate(ph["persons"]):
            vis = kp[ai, 2] > 0
            if vis.any():
                pts = kp[ai][vis, :2]
                people.append((p, kp, vis, max(box[2], box[3]) if box else float((pts.max(0) - pts.min(0)).max())))
        pairs = []
        for p, kp, vis, size in people:
            for d, (dk, ds) in enumerate(dets):
                both = vis & (ds[ei] > 0)
                if both.any():
                    err = np.linalg.norm(dk[ei][both] - kp[ai][both, :2], axis=1).mean() / max(size, 1.0)
                    pairs.append((err, p, d))
        used_p, used_d, match = set(), set(), {}
        for _, p, d in sorted(pairs):
            if p not in used_p and d not in used_d:
                used_p.add(p)
                used_d.add(d)
                match[p] = d
        total = correct = 0
        for p, kp, vis, size in people:
            total += int(vis.sum())
            if p in match:
                dk, ds = dets[match[p]]
                ok = vis & (ds[ei] > 0) & (np.linalg.norm(dk[ei] - kp[ai, :2], axis=1) <= 0.2 * size)
                correct += int(ok.sum())
        rows.append({"image": str(Path(ph["image"]).relative_to(images)), "set": ph["set"], "persons": n_ann,
                     "detections": len(dets), "joints": total, "correct": correct,
                     "scored_joints": [ph["names"][a] for a in ai]})
    print(json.dumps({"tier": tier, "rows": rows}))


def run_child(args: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"child {args} failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def body_size(kp: np.ndarray, sc: np.ndarray) -> float:
    """Median over frames of the keypoint-box diagonal of one person `[T, V, 2]`."""
    d = []
    for k, s in zip(kp, sc):
        pts = k[s > 0]
        if len(pts) >= 2:
            d.append(float(np.hypot(*(pts.max(0) - pts.min(0)))))
    return float(np.median(d)) if d else float("nan")


def compare_to_reference(ref: dict, other: dict, ref_layout: str, layout: str) -> dict:
    """Per COCO-17 joint: miss rate and median normalised error of `other` against the reference person 0."""
    from models.contract.layouts import get_layout

    rj, oj = get_layout(ref_layout).joints, get_layout(layout).joints
    names = [n for n in COCO17 if n in rj and n in oj]
    ri, oi = [rj.index(n) for n in names], [oj.index(n) for n in names]
    rk, rs = ref["keypoint"][0][:, ri], ref["keypoint_score"][0][:, ri]
    ok_, os_ = other["keypoint"][:, :, oi], other["keypoint_score"][:, :, oi]
    t = min(rk.shape[0], ok_.shape[1])
    rk, rs, ok_, os_ = rk[:t], rs[:t], ok_[:, :t], os_[:, :t]
    # Per frame, the other's person nearest the reference person (over joints both found).
    dist = np.full((ok_.shape[0], t), np.inf)
    for m in range(ok_.shape[0]):
        both = (rs > 0) & (os_[m] > 0)
        e = np.linalg.norm(ok_[m] - rk, axis=-1)
        n = both.sum(-1)
        dist[m] = np.where(n > 0, (e * both).sum(-1) / np.maximum(n, 1), np.inf)
    pick = np.argmin(dist, 0)
    pk, ps = ok_[pick, np.arange(t)], os_[pick, np.arange(t)]
    size = body_size(rk, rs)
    out = {}
    for j, n in enumerate(names):
        found = rs[:, j] > 0
        both = found & (ps[:, j] > 0)
        err = np.linalg.norm(pk[both, j] - rk[both, j], axis=-1) / size
        out[n] = {"ref_found": int(found.sum()), "miss": float(1 - both.sum() / max(found.sum(), 1)),
                  "err": float(np.median(err)) if len(err) else float("nan")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=Path, default=SHARED / "videos")
    ap.add_argument("--images", type=Path, default=SHARED / "images")
    ap.add_argument("--json", type=Path, default=None, help="Also write every number here.")
    ap.add_argument("--tiers", default=",".join(TIERS), help="Comma-separated tiers (default: all).")
    ap.add_argument("--skip-photos", action="store_true")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        if a.worker[0] == "video":
            child_video(a.worker[1], a.worker[2], a.worker[3], int(a.worker[4]))
        else:
            child_photos(a.worker[1], a.worker[2])
        return
    sys.path.insert(0, str(ROOT))
    tiers = a.tiers.split(",")
    videos = sorted(a.videos.glob("*.mp4"))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# bench/estimator_tiers.py  {now}  {platform.platform()}  {os.cpu_count()} CPUs  "
          f"python {platform.python_version()}", flush=True)
    results: dict = {"date": now, "speed": [], "video_accuracy": {}, "people": [], "photos": {}}
    with tempfile.TemporaryDirectory(prefix="skd-bench-est-") as tmp:
        kp: dict[tuple[str, str], dict] = {}
        layouts: dict[str, str] = {}
        for tier in tiers:
            for v in videos:
                npz = Path(tmp) / f"{tier}_{v.stem}.npz"
                m = 2 if TIERS[tier][0] == "openpose-lite" else 1
                r = run_child(["--worker", "video", tier, str(v), str(npz), str(m)])
                results["speed"].append(r)
                kp[(tier, v.name)] = dict(np.load(npz, allow_pickle=False))
                layouts[tier] = r["layout"]
        # ----- speed
        print("\n## Speed (CPU ms per video frame, video frames/s, ratio to heavy-hq CPU, peak RSS)", flush=True)
        print(f"{'tier':<18}{'frames':>8}{'cpu ms/frame':>14}{'frames/s':>10}{'x heavy':>9}{'peak RSS MB':>13}")
        ref_cpu = sum(r["cpu_s"] for r in results["speed"] if r["tier"] == REFERENCE)
        for tier in tiers:
            rows = [r for r in results["speed"] if r["tier"] == tier]
            f = sum(r["frames"] for r in rows)
            cpu, wall = sum(r["cpu_s"] for r in rows), sum(r["wall_s"] for r in rows)
            ratio = f"{ref_cpu / cpu:.1f}" if ref_cpu and REFERENCE in tiers else "-"
            print(f"{tier:<18}{f:>8}{1000 * cpu / f:>14.1f}{f / wall:>10.1f}{ratio:>9}"
                  f"{max(r['peak_rss_mb'] for r in rows):>13.0f}")
        print("per video:")
        for r in results["speed"]:
            print(f"  {r['tier']:<18}{r['video']:<26}{r['frames']:>5} frames {1000 * r['cpu_s'] / r['frames']:>7.1f} "
                  f"ms/frame {r['frames'] / r['wall_s']:>7.1f} frames/s")
        # ----- fast tiers against heavy
        if REFERENCE in tiers:
            print(f"\n## Fast tiers against {REFERENCE} on the videos (per joint: miss rate, median error / body size)")
            for tier in tiers:
                if tier == REFERENCE:
                    continue
                agg: dict[str, list] = {}
                for v in videos:
                    cmp = compare_to_reference(kp[(REFERENCE, v.name)], kp[(tier, v.name)], layouts[REFERENCE],
                                               layouts[tier])
                    results["video_accuracy"].setdefault(tier, {})[v.name] = cmp
                    for n, d in cmp.items():
                        agg.setdefault(n, []).append(d)
                print(f"{tier}:")
                allm, alle = [], []
                for n, ds in agg.items():
                    w = np.asarray([d["ref_found"] for d in ds], float)
                    miss = float((np.asarray([d["miss"] for d in ds]) * w).sum() / max(w.sum(), 1))
                    errs = [d["err"] for d in ds if np.isfinite(d["err"])]
                    err = float(np.median(errs)) if errs else float("nan")
                    allm.append(miss)
                    alle.append(err)
                    print(f"  {n:<16} miss {miss:6.3f}  err {err:6.3f}")
                print(f"  {'mean':<16} miss {np.mean(allm):6.3f}  err {np.nanmean(alle):6.3f}")
        # ----- people per frame
        print("\n## People per frame on the multi-person clips (tracked output, up to 2 kept)")
        for v in videos:
            if v.name not in MULTI_PERSON:
                continue
            rows = []
            if "openpose-lite" in tiers:
                d = kp[("openpose-lite", v.name)]
                rows.append(("openpose-lite --max-persons 2", d["keypoint_score"], d["raw"]))
            npz = Path(tmp) / f"m2_{v.stem}.npz"
            r = run_child(["--worker", "video", REFERENCE, str(v), str(npz), "2"])
            d = dict(np.load(npz, allow_pickle=False))
            rows.append((f"{REFERENCE} --max-persons 2 ({1000 * r['cpu_s'] / r['frames']:.0f} ms/frame)",
                         d["keypoint_score"], None))
            for name, sc, raw in rows:
                n = (sc > 0).any(-1).sum(0)
                line = (f"  {v.name:<20}{name:<44} mean {n.mean():.2f}  frames with 2: {(n == 2).mean():.2f}  "
                        f"with 0: {(n == 0).mean():.2f}")
                if raw is not None and len(raw):
                    line += f"  raw persons/frame mean {raw.mean():.2f} max {raw.max()}"
                print(line)
                results["people"].append({"video": v.name, "what": name, "mean": float(n.mean()),
                                          "two": float((n == 2).mean())})
    # ----- photos
    if not a.skip_photos and a.images.is_dir():
        print("\n## PCK@0.2 on the annotated photos (joints shared with the annotation)")
        photo_tiers = [t for t in tiers if TIERS[t][2] == "high"]
        for tier in photo_tiers:
            r = run_child(["--worker", "photos", tier, str(a.images)])
            results["photos"][tier] = r["rows"]
        sets = sorted({row["set"] for rows in results["photos"].values() for row in rows})
        print(f"{'tier':<16}" + "".join(f"{s:>13}" for s in sets) + f"{'all':>9}")
        for tier in photo_tiers:
            rows = results["photos"][tier]
            cells = []
            for s in sets:
                j = sum(r["joints"] for r in rows if r["set"] == s)
                c = sum(r["correct"] for r in rows if r["set"] == s)
                cells.append(f"{c / j:.2f} ({j})" if j else "-")
            j = sum(r["joints"] for r in rows)
            print(f"{tier:<16}" + "".join(f"{c:>13}" for c in cells) + f"{sum(r['correct'] for r in rows) / j:>9.2f}")
        print("  (cell: PCK@0.2 (annotated joints scored); images: "
              f"{len(next(iter(results['photos'].values())))})")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
