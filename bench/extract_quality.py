"""LQ against HQ skeletons on real videos, both against ground truth on annotated photos, and the corruption
profile that `pipeline.data.corrupt` replays.

    python bench/extract_quality.py [--videos DIR] [--images DIR] [--cache DIR] [--variants]
                                    [--profile-out models/zoo/lq_profile_penn13.json] [--json OUT.json]

Videos: HQ and LQ are extracted with `pipeline extract`'s code into the cache (re-runs are served from it);
the first (best-ranked) person of each is compared per frame, in penn13 (BlazePose joints by name, head =
nose), distances divided by the HQ clip's body size. `--variants` adds the coverage of two other HQ candidates
(flip averaging; tracking mode on every frame).
Photos: PCK@0.2 (of the larger side of the annotated person box; for MPII, of the box of its labelled joints)
on the joints BlazePose shares with each dataset's layout, for the one person MediaPipe returns per image,
matched to the ground-truth person it fits best. LQ on a single image is tracking mode on one frame: the first
frame of a track is a detection, so LQ equals HQ there except for the 1280 px size cap.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np

from estimators.mediapipe_pose import MediaPipeConfig, MediaPipePose
from models.contract.layouts import BLAZEPOSE33, PENN13, convert
from pipeline.extract.cache import PoseCache
from pipeline.extract.driver import ExtractOptions, extract
from pipeline.extract.quality import PairStats, pck

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared" / "data"
MPII_JOINTS = ["right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
               "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder",
               "left_elbow", "left_wrist"]


def extract_tier(videos: list[Path], quality: str, cache: Path, **over) -> dict[str, object]:
    s = extract([str(v) for v in videos], ExtractOptions(quality=quality, cache_dir=cache, **over),
                show_progress=True)
    pc = PoseCache(cache)
    out = {}
    for o in s.outcomes:
        if o.entry:
            out[Path(o.video).name] = pc.load(Path(o.entry)).result
        else:
            print(f"  {quality}: {o.reason}", file=sys.stderr)
    return out


def to_penn(res) -> tuple[np.ndarray, np.ndarray]:
    return convert(res.keypoint, res.keypoint_score, BLAZEPOSE33, PENN13)


def video_report(videos: list[Path], cache: Path, variants: bool, persons: int) -> tuple[dict, PairStats]:
    hq = extract_tier(videos, "high", cache, max_persons=persons)
    lq = extract_tier(videos, "low", cache, max_persons=persons)
    total = PairStats(PENN13.num_joints)
    rows = {}
    for name in sorted(set(hq) & set(lq)):
        st = PairStats(PENN13.num_joints)
        for acc in (st, total):
            acc.add(*to_penn(hq[name]), *to_penn(lq[name]))
        rows[name] = st.summary()
    rows["all"] = total.summary()
    if variants:
        for label, quality, over in (("hq_flip", "high", {"flip_average": True, "max_persons": persons}),
                                     ("track_every_frame", "low", {"stride": 1, "max_persons": persons})):
            res = extract_tier(videos, quality, cache, **over)
            for name in rows:
                if name in res:
                    rows[name][f"{label}_coverage"] = float(_has_person(res[name]).mean())
            cov = [_has_person(res[n]) for n in sorted(res)]
            rows["all"][f"{label}_coverage"] = float(np.concatenate(cov).mean())
    return rows, total


def _has_person(res) -> np.ndarray:
    """[T] bool: some person has at least 4 joints in the frame."""
    return ((res.keypoint_score > 0).sum(-1) >= 4).any(0)


def load_ground_truth(images: Path) -> list[tuple[str, Path, list[tuple[np.ndarray, np.ndarray, float]], list[str]]]:
    """(dataset, image, [(keypoints [J, 2], visible [J], box size)], joint names) per annotated photo."""
    out = []
    for ds, fname in (("coco", "test_coco.json"), ("crowdpose", "test_crowdpose.json"),
                      ("ochuman", "test_ochuman.json"), ("aic", "test_aic.json")):
        p = images / ds / fname
        if not p.is_file():
            continue
        d = json.loads(p.read_text())
        names = [n.lower().replace(" ", "_") for n in d["categories"][0]["keypoints"]]
        people: dict[int, list] = {}
        for a in d["annotations"]:
            k = np.asarray(a["keypoints"], np.float32).reshape(-1, 3)
            people.setdefault(a["image_id"], []).append((k[:, :2], k[:, 2], float(max(a["bbox"][2:4]))))
        for img in d["images"]:
            if img["id"] in people and (images / ds / img["file_name"]).is_file():
                out.append((ds, images / ds / img["file_name"], people[img["id"]], names))
    p = images / "mpii" / "test_mpii.json"
    if p.is_file():
        by_image: dict[str, list] = {}
        for a in json.loads(p.read_text()):
            k, v = np.asarray(a["joints"], np.float32), np.asarray(a["joints_vis"], np.float32)
            lab = k[v > 0]
            size = float((lab.max(0) - lab.min(0)).max()) if len(lab) >= 2 else 0.0
            by_image.setdefault(a["image"], []).append((k, v, size))
        for name, persons in by_image.items():
            if (images / "mpii" / name).is_file():
                out.append(("mpii", images / "mpii" / name, persons, MPII_JOINTS))
    return out


def image_report(images: Path) -> dict:
    gt = load_ground_truth(images)
    result: dict[str, dict] = {}
    for tier, cfg in (("hq", MediaPipeConfig.tier("high")), ("lq", MediaPipeConfig.tier("low"))):
        est = MediaPipePose(cfg)
        for ds, path, persons, names in gt:
            r = result.setdefault(ds, {"images": 0, "persons": 0}).setdefault(
                tier, {"correct": 0, "labelled": 0, "found": 0})
            img = cv2.imread(str(path))
            res = est.estimate([img], 1.0, img.shape[:2])
            shared = [(i, BLAZEPOSE33.index(n)) for i, n in enumerate(names) if n in BLAZEPOSE33.joints]
            gi, bi = [s[0] for s in shared], [s[1] for s in shared]
            pk, ps = res.keypoint[0, 0][bi], res.keypoint_score[0, 0][bi]
            cand = [(k[gi], v[gi], size) for k, v, size in persons if (v[gi] > 0).sum() >= 3 and size > 0]
            if tier == "hq":
                result[ds]["images"] += 1
                result[ds]["persons"] += len(cand)
                result[ds]["shared_joints"] = len(shared)
            if not cand or (ps > 0).sum() < 3:
                # Nothing found: every labelled joint of the image's best-annotated person counts as wrong.
                if cand:
                    r["labelled"] += int(max((v > 0).sum() for _, v, _ in cand))
                continue
            best = max((pck(pk, ps, k, v, size) for k, v, size in cand), key=lambda x: (x[0] / x[1], x[1]))
            r["correct"] += best[0]
            r["labelled"] += best[1]
            r["found"] += 1
    for ds in result.values():
        for tier in ("hq", "lq"):
            t = ds[tier]
            t["pck"] = t["correct"] / max(t["labelled"], 1)
    return result


def fmt(x: float) -> str:
    return f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=Path, default=SHARED / "videos")
    ap.add_argument("--images", type=Path, default=SHARED / "images")
    ap.add_argument("--cache", type=Path, default=ROOT / "data_cache")
    ap.add_argument("--max-persons", type=int, default=2,
                    help="persons extracted per video in both tiers (paired per frame by box overlap)")
    ap.add_argument("--variants", action="store_true", help="also measure HQ+flip and tracking-every-frame coverage")
    ap.add_argument("--profile-out", type=Path, default=None, help="write the fitted penn13 corruption profile")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    t0 = time.time()
    videos = sorted(args.videos.glob("*.mp4"))
    rows, total = video_report(videos, args.cache, args.variants, args.max_persons)
    print(f"\n## LQ vs HQ on {len(videos)} videos (penn13 joints, distances / HQ body size)\n")
    cols = ["frames", "hq_coverage", "lq_coverage", "hq_persons_per_frame", "lq_lost", "missing_joint_rate",
            "dist_mean", "dist_median", "dist_p90"]
    cols += [c for c in ("hq_flip_coverage", "track_every_frame_coverage") if c in rows["all"]]
    print("| video | " + " | ".join(cols) + " |")
    print("|" + "---|" * (len(cols) + 1))
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(str(r[c]) if c == "frames" else fmt(r[c]) for c in cols) + " |")
    img = image_report(args.images)
    print("\n## PCK@0.2 on annotated photos (MediaPipe's one person per image, best-matching annotated person)\n")
    print("| dataset | images | annotated persons | shared joints | HQ found | HQ PCK@0.2 | LQ found | LQ PCK@0.2 |")
    print("|---|---|---|---|---|---|---|---|")
    for ds, r in img.items():
        print(f"| {ds} | {r['images']} | {r['persons']} | {r.get('shared_joints', 0)} | {r['hq']['found']} | "
              f"{fmt(r['hq']['pck'])} | {r['lq']['found']} | {fmt(r['lq']['pck'])} |")
    all_h = sum(r["hq"]["correct"] for r in img.values()) / max(sum(r["hq"]["labelled"] for r in img.values()), 1)
    all_l = sum(r["lq"]["correct"] for r in img.values()) / max(sum(r["lq"]["labelled"] for r in img.values()), 1)
    print(f"| all | {sum(r['images'] for r in img.values())} | {sum(r['persons'] for r in img.values())} | | "
          f"{sum(r['hq']['found'] for r in img.values())} | {fmt(all_h)} | "
          f"{sum(r['lq']['found'] for r in img.values())} | {fmt(all_l)} |")
    profile = total.profile("penn13", list(PENN13.joints))
    profile["command"] = "python bench/extract_quality.py " + " ".join(sys.argv[1:])
    profile["source"] = (f"MediaPipe 0.10.21 HQ (per-frame detection) vs LQ (tracking, every 4th frame) on "
                         f"{', '.join(v.name for v in videos)}; {date.today().isoformat()}")
    print("\n## Fitted corruption profile (penn13)\n")
    print("| joint | miss_rate | jitter (robust sd) | jitter_rms | outlier_rate (> 0.2 body) |\n|---|---|---|---|---|")
    for j, m, s, rms, o in zip(PENN13.joints, profile["miss_rate"], profile["jitter"], profile["jitter_rms"],
                               profile["outlier_rate"]):
        print(f"| {j} | {m:.3f} | {s:.4f} | {rms:.4f} | {o:.3f} |")
    if args.profile_out:
        from models.contract.atomic import atomic_write_text

        atomic_write_text(args.profile_out, json.dumps(profile, indent=1) + "\n")
        print(f"\nwrote {args.profile_out}")
    if args.json:
        from models.contract.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps({"videos": rows, "images": img, "profile": profile,
                                                 "machine": platform.platform(), "seconds": time.time() - t0},
                                                indent=1))
    print(f"\n{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
