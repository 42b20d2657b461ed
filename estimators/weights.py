"""Pose weights that no wheel ships: where each is installed, whether its bytes are the right ones, how to install.

`CATALOGUE` is the one table (a plain dict, read by `pipeline models`): model name -> its files with their
sha256, the folder they must sit in, and how a user gets them. Each backend declares its own rows beside its
config (`register`, e.g. estimators/openpose_lite.py); importing `estimators` fills it. Nothing here downloads
at run time: a missing or altered file is a `BadInput` (one line, exit 2) that names the install command.

Folders:
- BlazePose lite/heavy: the legacy MediaPipe Pose graph loads `pose_landmark_{lite,heavy}.tflite` only from
  `mediapipe/modules/pose_landmark/` inside the installed mediapipe package (beside the bundled full model), so
  that is where they are installed. `SKD_BLAZEPOSE_DIR` overrides the folder (tests point it at a temporary
  folder; mediapipe itself still reads only its own).
- OpenPose-lite: `$SKD_MODELS_DIR/openpose-lite/`, default `~/.cache/skd-pipeline/models/openpose-lite/`.

Sources `install` accepts: a folder (searched recursively) or a `.tar`/`.tgz`/`.tar.gz` holding the files
under any path (the npm package `@mediapipe/pose` is such a tarball; `install_npm` fetches it with `npm pack`).
Each file is checked against its sha256 before it is written, and written atomically.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from models.contract.atomic import atomic_path
from models.contract.errors import BadInput

CATALOGUE: dict[str, dict] = {}  # filled by the backends (`register`) when `estimators` is imported


def register(entries: dict[str, dict]) -> dict[str, dict]:
    """Add a backend's weights to `CATALOGUE` (done once, in the backend's own module, beside its config).

    Each entry: "what" (one line), "folder" ("blazepose": MediaPipe's own folder; "models": the project's),
    "files" (file name -> sha256), "npm" (an npm package holding them, or None), "how", "licence".
    """
    for name, entry in entries.items():
        if name in CATALOGUE and CATALOGUE[name] != entry:
            raise ValueError(f"two backends declare weights {name!r}")
        CATALOGUE[name] = entry
    return entries


TAR_SUFFIXES = (".tar", ".tgz", ".tar.gz")


def _check_name(name: str) -> dict:
    if name not in CATALOGUE:
        raise BadInput(f"unknown model {name!r} (known: {', '.join(CATALOGUE)})")
    return CATALOGUE[name]


def mediapipe_landmark_dir() -> Path:
    """The folder MediaPipe's legacy pose graph loads landmark models from (the full model ships there)."""
    spec = importlib.util.find_spec("mediapipe")  # finds the package without importing it (slow, chatty)
    if spec is None or not spec.submodule_search_locations:
        raise BadInput("mediapipe is not installed (pip install mediapipe==0.10.21)")
    return Path(list(spec.submodule_search_locations)[0]) / "modules" / "pose_landmark"


def blazepose_dir() -> Path:
    """Where BlazePose lite/heavy are installed and looked for: `$SKD_BLAZEPOSE_DIR`, else mediapipe's folder."""
    env = os.environ.get("SKD_BLAZEPOSE_DIR")
    return Path(env) if env else mediapipe_landmark_dir()


def models_dir() -> Path:
    """The project's own weights folder: `$SKD_MODELS_DIR`, else `~/.cache/skd-pipeline/models`."""
    env = os.environ.get("SKD_MODELS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "skd-pipeline" / "models"


def model_dir(name: str) -> Path:
    """Where model `name`'s files are installed."""
    entry = _check_name(name)
    return blazepose_dir() if entry["folder"] == "blazepose" else models_dir() / name


_HASHES: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """sha256 of a file, remembered for this process by (path, size, mtime): `settings()` asks for it often."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


@dataclass(frozen=True)
class FileState:
    name: str
    path: Path
    present: bool
    sha256_ok: bool


@dataclass(frozen=True)
class ModelState:
    name: str
    folder: Path
    files: tuple[FileState, ...]

    @property
    def installed(self) -> bool:
        return all(f.present and f.sha256_ok for f in self.files)

    def problem(self) -> str | None:
        """One phrase saying what is wrong, or None when the model is installed."""
        missing = [f.name for f in self.files if not f.present]
        if missing:
            return f"{', '.join(missing)} not in {self.folder}"
        wrong = [f.name for f in self.files if not f.sha256_ok]
        if wrong:
            return f"{', '.join(wrong)} in {self.folder} has the wrong sha256"
        return None


def state(name: str) -> ModelState:
    entry = _check_name(name)
    folder = model_dir(name)
    files = []
    for fname, digest in entry["files"].items():
        p = folder / fname
        present = p.is_file()
        files.append(FileState(fname, p, present, present and sha256_of(p) == digest))
    return ModelState(name, folder, tuple(files))


def install_hint(name: str) -> str:
    entry = _check_name(name)
    if entry["npm"]:
        return f"install it with `pipeline models install --npm {name}` or `pipeline models install SRC {name}`"
    return f"install it with `pipeline models install SRC {name}` (SRC: a folder or tarball with the files)"


def require(name: str) -> dict[str, Path]:
    """The verified files of model `name` (file name -> path); BadInput naming the install command if not."""
    st = state(name)
    why = st.problem()
    if why is not None:
        raise BadInput(f"{name}: {why}; {install_hint(name)}")
    return {f.name: f.path for f in st.files}


def weights_sha256(name: str) -> dict[str, str]:
    """file name -> sha256 of the installed files (for cache keys); BadInput when not installed."""
    require(name)
    return dict(_check_name(name)["files"])


# ---------------------------------------------------------------------------------------------- installing

def _wanted(names: Iterable[str]) -> dict[str, tuple[str, str]]:
    """file name -> (model, sha256) for the named models."""
    out: dict[str, tuple[str, str]] = {}
    for n in names:
        for fname, digest in _check_name(n)["files"].items():
            out[fname] = (n, digest)
    return out


def _write_verified(read_into, fname: str, digest: str, dest: Path, source: str) -> None:
    """Copy one file through `read_into(fh)` into `dest` atomically, refusing it when its sha256 is not `digest`."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            read_into(out)
        got = sha256_of(tmp)
        if got != digest:
            raise BadInput(f"{fname} has sha256 {got[:16]}..., expected {digest[:16]}...; not installed", source)


def install(src: str | os.PathLike, names: Iterable[str] = ()) -> list[str]:
    """Install the named models (all whose files `src` holds, when none is named) from a folder or tarball.

    Returns the models installed. A file whose sha256 differs is refused (BadInput, nothing of it written);
    models already installed with the right bytes are rewritten only if `src` has them too.
    """
    src = Path(src)
    names = list(names)
    for n in names:
        _check_name(n)
    if not src.exists():
        raise BadInput("no such file or folder", src)
    found: dict[str, object] = {}  # file name -> Path (folder) or TarInfo (tarball)
    wanted_all = _wanted(names or CATALOGUE)
    tar = None
    try:
        if src.is_dir():
            for p in sorted(src.rglob("*")):
                if p.is_file() and p.name in wanted_all and p.name not in found:
                    found[p.name] = p
        elif src.name.endswith(TAR_SUFFIXES):
            try:
                tar = tarfile.open(src, "r:*")
                for m in tar.getmembers():
                    base = m.name.rsplit("/", 1)[-1]
                    if m.isfile() and base in wanted_all and base not in found:
                        found[base] = m
            except (tarfile.TarError, OSError, EOFError) as e:
                raise BadInput(f"not a readable tarball ({type(e).__name__}: {e})", src) from None
        else:
            raise BadInput(f"not a folder or a tarball ({', '.join(TAR_SUFFIXES)})", src)
        targets = names or [n for n in CATALOGUE if all(f in found for f in CATALOGUE[n]["files"])]
        if not targets:
            raise BadInput(f"holds the files of none of the models ({', '.join(CATALOGUE)})", src)
        for n in targets:
            missing = [f for f in CATALOGUE[n]["files"] if f not in found]
            if missing:
                raise BadInput(f"{', '.join(missing)} of {n} not found there", src)
        for n in targets:
            folder = model_dir(n)
            for fname, digest in CATALOGUE[n]["files"].items():
                item = found[fname]
                if isinstance(item, Path):
                    def read_into(out, item=item):
                        with open(item, "rb") as fh:
                            shutil.copyfileobj(fh, out, 1 << 20)
                else:
                    def read_into(out, item=item):
                        fh = tar.extractfile(item)
                        if fh is None:
                            raise BadInput(f"{item.name} is not a regular file in the tarball", src)
                        shutil.copyfileobj(fh, out, 1 << 20)
                try:
                    _write_verified(read_into, fname, digest, folder / fname, str(src))
                except PermissionError as e:
                    raise BadInput(f"cannot write {folder} ({e.strerror})", src) from None
        return targets
    finally:
        if tar is not None:
            tar.close()


def install_npm(names: Iterable[str] = ()) -> list[str]:
    """Install BlazePose models from the npm package `@mediapipe/pose` fetched by the `npm` client (online)."""
    names = list(names) or [n for n, e in CATALOGUE.items() if e["npm"]]
    for n in names:
        if not _check_name(n)["npm"]:
            raise BadInput(f"{n} is not in an npm package; {install_hint(n)}")
    packages = sorted({CATALOGUE[n]["npm"] for n in names})
    return [m for package in packages
            for m in _install_npm_package(package, [n for n in names if CATALOGUE[n]["npm"] == package])]


def _install_npm_package(package: str, names: list[str]) -> list[str]:
    npm = shutil.which("npm")
    if npm is None:
        raise BadInput("npm is not on the PATH; install Node.js or give the files: `pipeline models install SRC`")
    with tempfile.TemporaryDirectory(prefix="skd-npm-") as tmp:
        try:
            proc = subprocess.run([npm, "pack", package, "--pack-destination", tmp, "--silent"],
                                  cwd=tmp, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise BadInput(f"`npm pack {package}` took more than 600 s") from None
        tgz = sorted(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tgz:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise BadInput(f"`npm pack {package}` failed (exit {proc.returncode}): {last[:200]}")
        return install(tgz[0], names)
