"""Fit the miss-episode corruption profile from real HQ/LQ pairs and show real LQ beside profile-simulated LQ.

    python bench/lq_profile.py [--videos DIR] [--images DIR] [--cache DIR] [--profile-out FILE.json]
                               [--json OUT.json] [--skip-photos]

HQ = the `blazepose` high tier (heavy, per-frame detection, every frame); the fast tiers are the `blazepose` low
tier (lite, tracking, every 4th frame) and openpose-lite's low tier (every 4th frame), one person kept each, on
every video in ../shared/data/videos; all converted to penn13 by joint name. Per fast tier a profile is fitted
(pipeline/data/miss_profile.py) and then replayed on the HQ skeletons of the same clips (seed 0); the old
independent-miss profile (models/zoo/lq_profile_penn13.json, `corrupt` with per-joint rates and jitter) is
replayed too; each simulated row pools `--repeats` (20) simulations of every clip, because a handful of long
episodes carry most of the misses and one draw per clip is mostly luck. The table compares, against HQ: miss
rate, miss-run length (mean, median, 90th percentile, share of runs of 4+ frames), joints missing per frame with
a miss, frames with every joint missing, per-joint RMS error (body-size units).

Annotation offset (--images): BlazePose heavy (high tier) on every annotated photo of ../shared/data/images,
each annotated person matched to the nearest detection; per penn13 joint whose name the annotation has (the
head is left at 0: Penn Action's head point is no annotation's nose), the mean (estimator - annotation) / the
person's size (longer side of its box, else keypoint extent). Written into the lite profile as
`annotation_offset` (for simulating LQ of annotated datasets such as Penn Action).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from estimators import ESTIMATORS
from models.contract.atomic import atomic_write_text
from models.contract.layouts import convert, get_layout
from models.contract.skeleton import Clip, body_scale
from pipeline.data.corrupt import CorruptSpec, corrupt_clip, load_profile
from pipeline.data.miss_profile import ProfileBuilder, apply, load_replay, miss_runs, track_pair
from pipeline.extract.cache import PoseCache
from pipeline.extract.driver import ExtractOptions, extract

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PENN = get_layout("penn13")
# tier -> (estimator, quality, persons kept): openpose-lite keeps 2 so that the one heavy follows is among them
FAST = {"lite": ("blazepose", "low", 1), "openpose-lite": ("openpose-lite", "low", 2)}
OLD_PROFILE = ROOT / "models" / "zoo" / "lq_profile_penn13.json"


def extract_tier(videos: list[Path], estimator: str, quality: str, cache: Path, persons: int = 1) -> dict:
    opts = ExtractOptions(quality=quality, estimator=estimator, cache_dir=cache, max_persons=persons)
    s = extract([str(v) for v in videos], opts, show_progress=False)
    pc = PoseCache(cache)
    out = {}
    for o in s.outcomes:
        if o.entry:
            res = pc.load(Path(o.entry)).result
            kp, sc = convert(res.keypoint, res.keypoint_score, get_layout(res.layout), PENN)
            out[Path(o.video).name] = (kp[..., :2].astype(np.float32), sc.astype(np.float32))
        else:
            print(f"  {estimator} {quality}: {o.reason}", file=sys.stderr)
    return out


def stats(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """Statistics of LQ against HQ over clips of (hq_present, missing, err) [T,V] / [T,V,2]."""
    present = np.concatenate([p for p, _, _ in pairs])
    missing = np.concatenate([m for _, m, _ in pairs])
    err = np.concatenate([e for _, _, e in pairs])
    runs = np.concatenate([miss_runs(m, p) for p, m, _ in pairs])
    frames = present.any(-1)
    with_miss = missing.any(-1) & frames
    lost = (missing == present).all(-1) & frames
    with warnings.catch_warnings():  # a joint never paired: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        rms = np.sqrt(np.nanmean((err ** 2).sum(-1), axis=0))
    return {"miss_rate": float(missing.sum() / max(present.sum(), 1)),
            "miss_rate_joint": (missing.sum(0) / np.maximum(present.sum(0), 1)).round(4).tolist(),
            "runs": int(runs.size), "run_mean": float(runs.mean()) if runs.size else 0.0,
            "run_p50": float(np.percentile(runs, 50)) if runs.size else 0.0,
            "run_p90": float(np.percentile(runs, 90)) if runs.size else 0.0,
            "runs_4plus": float((runs >= 4).mean()) if runs.size else 0.0,
            "joints_per_miss_frame": float(missing[with_miss].sum(-1).mean()) if with_miss.any() else 0.0,
            "lost_frames": float(lost.sum() / max(frames.sum(), 1)),
            "rms_joint": np.round(rms, 4).tolist(), "rms": float(np.nanmean(rms))}


def simulate(hq: dict, prof_path: Path, old: bool, repeats: int, seed: int = 0) -> list:
    """Profile-simulated LQ of each HQ clip, `repeats` times, as (hq_present, missing, err) like the real pairs."""
    rng = np.random.default_rng(seed)
    replay = None if old else load_replay(str(prof_path), PENN.num_joints)
    old_prof = load_profile(str(prof_path), PENN.num_joints) if old else None
    out = []
    for name in sorted(hq) * repeats:
        kp, sc = hq[name]
        kp, sc = kp[:1], sc[:1]
        present = sc > 0
        if old:
            c = corrupt_clip(Clip(name, 0, kp, sc), CorruptSpec(impute=0), rng, old_prof)
            sim_kp, sim_present = c.keypoint, c.keypoint_score > 0
        else:
            sim_kp, dropped = apply(kp, present, body_scale(kp, sc), replay, rng)
            sim_present = present & ~dropped
        out.append(track_pair(kp, sc, sim_kp, np.where(sim_present, 1.0, 0.0).astype(np.float32)))
    return out


def annotation_offset(images: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per penn13 joint: mean (heavy - annotation) / person size [V, 2], and the number of joints behind it."""
    import cv2
    from estimator_tiers import load_photo_annotations  # bench/ is this script's folder

    est = ESTIMATORS["blazepose"].tier("high").build()
    bp = get_layout(est.layout)
    sums, counts = np.zeros((PENN.num_joints, 2)), np.zeros(PENN.num_joints)
    est.begin_video()
    for ph in load_photo_annotations(images):
        img = cv2.imread(str(ph["image"]))
        if img is None:
            continue
        dets = est.detect(img)
        for v, joint in enumerate(PENN.joints):
            if joint == "head" or joint not in ph["names"]:
                continue
            a, e = ph["names"].index(joint), bp.index(joint)
            for kp, box in ph["persons"]:
                vis = kp[:, 2] > 0
                if vis.sum() < 4 or not vis[a]:
                    continue
                pts = kp[vis, :2]
                size = max(box[2], box[3]) if box else float((pts.max(0) - pts.min(0)).max())
                best = None
                for dk, ds in dets:  # the detection nearest to this person (mean over the joints both have)
                    ok = [(i, bp.index(n)) for i, n in enumerate(ph["names"]) if n in bp.joints and vis[i]
                          and ds[bp.index(n)] > 0]
                    if len(ok) >= 4:
                        d = np.mean([np.linalg.norm(dk[j] - kp[i, :2]) for i, j in ok]) / max(size, 1.0)
                        if d < 0.5 and (best is None or d < best[0]):
                            best = (d, dk, ds)
                if best is not None and best[2][e] > 0:
                    sums[v] += (best[1][e] - kp[a, :2]) / max(size, 1.0)
                    counts[v] += 1
    est.close()
    return sums / np.maximum(counts, 1)[:, None], counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=Path, default=SHARED / "videos")
    ap.add_argument("--images", type=Path, default=SHARED / "images")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/lq_profile_cache"))
    ap.add_argument("--profile-out", type=Path, default=None, help="write the lite profile here")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--skip-photos", action="store_true")
    ap.add_argument("--repeats", type=int, default=20,
                    help="simulations of each clip pooled in the replay rows (a few long episodes carry most misses)")
    a = ap.parse_args()
    videos = sorted(a.videos.glob("*.mp4"))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# bench/lq_profile.py  {now}  {platform.platform()}")
    print(f"# python bench/lq_profile.py {' '.join(sys.argv[1:])}\n")
    hq = extract_tier(videos, "blazepose", "high", a.cache)
    report: dict = {"videos": [v.name for v in videos], "tiers": {}}
    offset = counts = None
    if not a.skip_photos and a.images.is_dir():
        offset, counts = annotation_offset(a.images)
        report["annotation_offset"] = {"offset": offset.round(4).tolist(), "joints": counts.astype(int).tolist()}
    for tier, (est, quality, persons) in FAST.items():
        lq = extract_tier(videos, est, quality, a.cache, persons)
        names = sorted(set(hq) & set(lq))
        builder = ProfileBuilder(PENN.num_joints)
        real = []
        for n in names:
            pair = track_pair(*hq[n], *lq[n])
            builder.add(*pair)
            real.append(pair)
        prof = {"layout": PENN.name, "joints": list(PENN.joints), **builder.fit()}
        if tier == "lite" and offset is not None:
            prof["annotation_offset"] = offset.round(4).tolist()
        prof["source"] = (f"BlazePose heavy (high tier) vs {tier} ({quality} tier) on {', '.join(names)}; "
                          f"{now}")
        prof["command"] = "python bench/lq_profile.py " + " ".join(sys.argv[1:])
        path = a.profile_out if (tier == "lite" and a.profile_out) else a.cache / f"profile_{tier}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(prof) + "\n")
        # Replay without the annotation offset: the clean side here is heavy's output, not an annotation.
        plain = dict(prof, annotation_offset=np.zeros((PENN.num_joints, 2)).tolist())
        plain_path = a.cache / f"profile_{tier}_no_offset.json"
        atomic_write_text(plain_path, json.dumps(plain) + "\n")
        hq_used = {n: hq[n] for n in names}
        rows = {"real": stats(real), "episode replay": stats(simulate(hq_used, plain_path, False, a.repeats))}
        if OLD_PROFILE.is_file():
            rows["old independent"] = stats(simulate(hq_used, OLD_PROFILE, True, a.repeats))
        report["tiers"][tier] = {"profile": str(path), "episodes": len(prof["episodes"]),
                                 "episode_start_rate": prof["episode_start_rate"], "stats": rows}
        print(f"## {tier} vs heavy: {len(names)} clips, {len(prof['episodes'])} miss episodes, profile {path}\n")
        print("| | miss rate | runs | run mean | run p50 | run p90 | runs >= 4 | joints/miss frame | all lost | RMS |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for label, s in rows.items():
            print(f"| {label} | {s['miss_rate']:.3f} | {s['runs']} | {s['run_mean']:.2f} | {s['run_p50']:.0f} | "
                  f"{s['run_p90']:.0f} | {s['runs_4plus']:.2f} | {s['joints_per_miss_frame']:.2f} | "
                  f"{s['lost_frames']:.3f} | {s['rms']:.4f} |")
        print("\nper joint: miss rate real / replay / old; RMS real / replay / old")
        for v, j in enumerate(PENN.joints):
            mr = " / ".join(f"{rows[k]['miss_rate_joint'][v]:.3f}" for k in rows)
            rm = " / ".join(f"{rows[k]['rms_joint'][v]:.4f}" for k in rows)
            print(f"  {j:<15} {mr:<24} {rm}")
        print()
    if offset is not None:
        print("## annotation offset (heavy - annotation) / person size, penn13 joints\n")
        for v, j in enumerate(PENN.joints):
            print(f"  {j:<15} dx {offset[v, 0]:+.4f}  dy {offset[v, 1]:+.4f}  ({int(counts[v])} joints)")
    if a.json:
        atomic_write_text(a.json, json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
