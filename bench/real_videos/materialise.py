"""Write the real-video set of bench/real_videos/manifest.json into a folder, from git mirrors of its sources.

    python bench/real_videos/materialise.py DIR [--mirror-root ROOT] [--shared DATA] [--split dev,val,unlabeled]

The clips are third-party footage and are not shipped. Each manifest entry names the repository, the path and
the commit it came from, the sha256 of that file (`source_sha256`) and of the clip as used (`sha256`), and how
the clip was made from the file: `encode` "copy" (the repository's bytes) or "h264" (re-encoded: H.264, no
audio, the source's frame rate, `cut` [start, end] seconds when only part of the file is used).

Sources are read with `git --git-dir=MIRROR show COMMIT:PATH` from a mirror of each repository under ROOT,
as `ROOT/owner+name/repo` (what the search tool's `fetch` brings), `ROOT/owner+name`, `ROOT/owner/name` or
`ROOT/owner/name.git`. Entries with a `shared` field (a path under the project's shared data folder,
`--shared`, ../shared/data) are copied from there when it holds them, else read from the mirror like the others.

A source whose sha256 differs from the manifest is refused (never guessed at). A re-encoded clip whose sha256
differs is kept and reported: x264 and ffmpeg versions write different bytes for the same cut (the manifest's
were written with the ffmpeg named in its `encoder` field); `--strict` refuses those too. Clips already in DIR
with the manifest's sha256 are left as they are.

Written: DIR/FILE for every clip; DIR/labels.csv, rows `video,label,split` for the `dev` and `val` clips (as
`pipeline dataset build` and `pipeline eval --videos` read them: paths relative to the CSV; `other` marks a
clip of an action outside the model's classes); DIR/unlabeled.csv, the same columns for the `unlabeled` videos
(label `unlabeled`: material for heavy-vs-lite pairs, never a measure). Exit 1 when any clip is missing.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from estimators.weights import sha256_of
from models.contract.atomic import atomic_path, atomic_write_text
from models.contract.errors import BadInput

MANIFEST = Path(__file__).with_name("manifest.json")
SPLITS = ("dev", "val", "unlabeled")
FIELDS = ("file", "label", "repo", "path", "commit", "sha256", "source_sha256", "encode", "cut", "split")
# One fixed encoder setting for every re-encoded clip. One x264 thread: x264's output depends on its thread
# count, so a fixed count keeps the bytes the same across machines with the same ffmpeg.
H264 = ("-map", "0:v:0", "-an", "-sn", "-dn", "-map_metadata", "-1", "-c:v", "libx264", "-preset", "medium",
        "-crf", "18", "-pix_fmt", "yuv420p", "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-threads", "1",
        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-movflags", "+faststart")


def load_manifest(path: Path) -> tuple[dict, list[dict]]:
    """The manifest's header and its clips; BadInput when a clip lacks a field or a value is not one allowed."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot read the manifest: {e}", path) from None
    clips = doc.get("clips") if isinstance(doc, dict) else None
    if not isinstance(clips, list):
        raise BadInput("the manifest is not an object with a 'clips' list", path)
    for i, c in enumerate(clips):
        missing = [f for f in FIELDS if not isinstance(c, dict) or f not in c]
        if missing:
            raise BadInput(f"clip {i} lacks {', '.join(missing)}", path)
        if c["split"] not in SPLITS:
            raise BadInput(f"clip {i} ({c['file']}): split {c['split']!r} is not one of {', '.join(SPLITS)}", path)
        if c["encode"] not in ("copy", "h264") or (c["encode"] == "copy" and c["cut"] is not None):
            raise BadInput(f"clip {i} ({c['file']}): encode must be 'copy' (uncut) or 'h264'", path)
    files = [c["file"] for c in clips]
    if len(set(files)) != len(files):
        raise BadInput("the manifest names the same file twice", path)
    return doc, clips


def mirror_of(root: Path, repo: str) -> Path | None:
    """The git directory of `repo` (owner/name) under `root`, in any of the layouts the docstring names."""
    owner, name = repo.split("/", 1)
    for d in (root / f"{owner}+{name}" / "repo", root / f"{owner}+{name}" / "repo" / ".git", root / f"{owner}+{name}",
              root / owner / name,
              root / owner / f"{name}.git", root / owner / name / ".git"):
        if (d / "HEAD").is_file() and (d / "objects").is_dir():
            return d
    return None


def source_bytes(clip: dict, mirror_root: Path, shared: Path) -> bytes:
    """The source file's bytes; BadInput when they cannot be had or their sha256 is not the manifest's."""
    if clip.get("shared") and (shared / clip["shared"]).is_file():
        data = (shared / clip["shared"]).read_bytes()
    else:
        git_dir = mirror_of(mirror_root, clip["repo"])
        if git_dir is None:
            raise BadInput(f"no mirror of {clip['repo']} (fetch github:{clip['repo']})", mirror_root)
        got = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{clip['commit']}:{clip['path']}"],
                             capture_output=True, timeout=300)
        if got.returncode != 0:
            raise BadInput(f"{clip['repo']} has no {clip['path']} at {clip['commit'][:12]}: "
                           f"{got.stderr.decode(errors='replace').strip()[:200]}", git_dir)
        data = got.stdout
    if hashlib.sha256(data).hexdigest() != clip["source_sha256"]:
        raise BadInput(f"{clip['repo']}:{clip['path']} has a different sha256 than the manifest's", clip["file"])
    return data


def h264(src: Path, out: Path, cut: list[float] | None) -> None:
    """Re-encode `src` to `out` (H.264, no audio, the source's frame rate), only [start, end] s with `cut`."""
    span = [] if cut is None else ["-ss", f"{cut[0]:g}", "-t", f"{cut[1] - cut[0]:g}"]
    with atomic_path(out, ext_last=True) as tmp:
        got = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *span[:2], "-i", str(src), *span[2:],
                              *H264, "-f", "mp4", str(tmp)], capture_output=True, timeout=600)
        if got.returncode != 0:
            raise BadInput(f"ffmpeg failed: {got.stderr.decode(errors='replace').strip()[-300:]}", src)


def write_clip(clip: dict, data: bytes, out: Path) -> None:
    if clip["encode"] == "copy":
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)
        return
    with tempfile.TemporaryDirectory(prefix="materialise.") as td:
        src = Path(td) / ("source" + Path(clip["path"]).suffix.lower())
        src.write_bytes(data)
        h264(src, out, clip["cut"])


def labels_text(rows: list[tuple[str, str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("video", "label", "split"))
    w.writerows(rows)
    return buf.getvalue()


def materialise(clips: list[dict], out_dir: Path, mirror_root: Path, shared: Path, strict: bool,
                log=print) -> tuple[list[dict], list[str]]:
    """Write every clip to `out_dir`; the clips that are there afterwards and one line per problem."""
    out_dir.mkdir(parents=True, exist_ok=True)
    have, problems = [], []
    for c in clips:
        out = out_dir / c["file"]
        if out.is_file() and sha256_of(out) == c["sha256"]:
            have.append(c)
            continue
        if c["encode"] == "h264" and shutil.which("ffmpeg") is None:
            problems.append(f"{c['file']}: ffmpeg is not installed (Debian: apt-get install ffmpeg)")
            continue
        try:
            write_clip(c, source_bytes(c, mirror_root, shared), out)
        except BadInput as e:
            problems.append(f"{c['file']}: {e}")
            continue
        if sha256_of(out) != c["sha256"]:
            if strict or c["encode"] == "copy":
                out.unlink()
                problems.append(f"{c['file']}: the written clip's sha256 differs from the manifest's")
                continue
            log(f"note: {c['file']}: re-encoded with a different sha256 (another ffmpeg/x264 build?); kept")
        have.append(c)
        log(f"wrote {c['file']}")
    return have, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="folder to write the clips and labels.csv into")
    ap.add_argument("--mirror-root", type=Path, default=Path("/work/.mirror"),
                    help="folder holding a git mirror of each source repository [/work/.mirror]")
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data",
                    help="the project's shared data folder, for the clips marked 'shared' [../shared/data]")
    ap.add_argument("--split", default=",".join(SPLITS), help="comma-separated splits to write [all]")
    ap.add_argument("--strict", action="store_true", help="refuse re-encoded clips whose sha256 differs")
    ap.add_argument("--manifest", type=Path, default=MANIFEST, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    wanted = {s.strip() for s in args.split.split(",") if s.strip()}
    if not wanted or wanted - set(SPLITS):
        raise BadInput(f"--split takes some of {', '.join(SPLITS)}", args.split)
    _, clips = load_manifest(args.manifest)
    have, problems = materialise([c for c in clips if c["split"] in wanted], args.dir, args.mirror_root,
                                 args.shared, args.strict)
    for p in problems:
        print(f"missing: {p}", file=sys.stderr)
    labelled = [(c["file"], c["label"], c["split"]) for c in have if c["split"] != "unlabeled"]
    unlabeled = [(c["file"], "unlabeled", "unlabeled") for c in have if c["split"] == "unlabeled"]
    if labelled:
        atomic_write_text(args.dir / "labels.csv", labels_text(labelled))
    if unlabeled:
        atomic_write_text(args.dir / "unlabeled.csv", labels_text(unlabeled))
    print(f"{len(have)} clips in {args.dir} ({len(labelled)} labelled, {len(unlabeled)} unlabeled), "
          f"{len(problems)} missing")
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BadInput as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(2)
