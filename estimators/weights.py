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
Installing streams each file into a new temp file while hashing it, and stops at the catalogue's size (a file
that is larger, however it is packed, is refused after that many bytes). The source is vetted first (a folder or
a regular file: a FIFO or a link to a device is refused, not opened). A model is all or nothing: every file of
every model asked for is written and checked before the first is renamed into place. Temp files a killed install
left are removed by the next one (under a lock on the folder). Errors are one line: bad source or target folder
`BadInput` (exit 2), a full disk `WriteFailed` (exit 1).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib.util
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from models.contract.atomic import AtomicFile, new_folder, no_room, remove_stale_temps, write_failed
from models.contract.errors import BadInput, WriteFailed
from models.contract.paths import file_type

CATALOGUE: dict[str, dict] = {}  # filled by the backends (`register`) when `estimators` is imported


def register(entries: dict[str, dict]) -> dict[str, dict]:
    """Add a backend's weights to `CATALOGUE` (done once, in the backend's own module, beside its config).

    Each entry: "what" (one line), "folder" ("blazepose": MediaPipe's own folder; "models": the project's),
    "files" (file name -> sha256), "sizes" (file name -> bytes: an install never writes past it), "npm" (an npm
    package holding them, or None), "how", "licence".
    """
    for name, entry in entries.items():
        if name in CATALOGUE and CATALOGUE[name] != entry:
            raise ValueError(f"two backends declare weights {name!r}")
        CATALOGUE[name] = entry
    return entries


TAR_SUFFIXES = (".tar", ".tgz", ".tar.gz")
# How far into a tarball (uncompressed) `install` reads looking for the files: the npm package is a few tens of
# MB; a gzip bomb or a sparse member of terabytes is refused at its header, not unpacked.
MAX_TAR_SCAN = 1 << 30


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
        ok = present and p.stat().st_size == entry["sizes"][fname] and sha256_of(p) == digest
        files.append(FileState(fname, p, present, ok))
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


# The errors reading a source may raise: a damaged gzip stream, a cut tarball, an I/O error.
READ_ERRORS = (OSError, EOFError, zlib.error, tarfile.TarError)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def _vet_source(src: Path) -> os.stat_result:
    """A folder, or a regular file with a tarball's name; nothing else is opened (a FIFO would block, a link to
    /dev/zero never end)."""
    try:
        st = os.stat(src)
    except FileNotFoundError:
        raise BadInput("no such file or folder", src) from None
    except OSError as e:
        raise BadInput(f"cannot read ({e.strerror or type(e).__name__})", src) from None
    if stat.S_ISDIR(st.st_mode):
        return st
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(f"is {file_type(st.st_mode)}, not a folder or a tarball", src)
    if not src.name.endswith(TAR_SUFFIXES):
        raise BadInput(f"not a folder or a tarball ({', '.join(TAR_SUFFIXES)})", src)
    return st


def _scan_folder(src: Path, wanted: dict) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root, _dirs, files in sorted(os.walk(src)):  # (links to folders are not followed)
        for f in sorted(files):
            if f in wanted and f not in found:
                found[f] = Path(root) / f
    return found


def _scan_tar(tar: tarfile.TarFile, src: Path, wanted: dict) -> dict[str, tarfile.TarInfo]:
    """Member per wanted file name, reading headers only as far as needed and never past MAX_TAR_SCAN."""
    found: dict[str, tarfile.TarInfo] = {}
    try:
        while len(found) < len(wanted):
            m = tar.next()
            if m is None:
                break
            base = m.name.rsplit("/", 1)[-1]
            if m.isfile() and base in wanted and base not in found:
                size = CATALOGUE[wanted[base][0]]["sizes"][base]
                if m.size != size:  # refused at its header: a sparse or compressed giant is never unpacked
                    raise BadInput(_size_problem(base, m.size, size), src)
                found[base] = m
            elif m.offset_data + m.size > MAX_TAR_SCAN:  # skipping it would mean unpacking all of it
                raise BadInput(f"a member ({m.name[:80]!r}) reaches past the first {MAX_TAR_SCAN >> 20} MiB "
                               "this command reads of a tarball; not installed", src)
    except READ_ERRORS as e:
        raise BadInput(f"damaged tarball ({_one_line(e)}); not installed", src) from None
    return found


def _open_tar(fh: BinaryIO, src: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=fh, mode="r:*")
    except tarfile.ReadError:  # tarfile's message lists every compression it tried, one per line
        raise BadInput("not a tar archive (plain, gzip, bzip2 or xz), or a damaged one; not installed",
                       src) from None
    except READ_ERRORS as e:
        raise BadInput(f"damaged tarball ({_one_line(e)}); not installed", src) from None


def _stat_size(path: Path, src: Path) -> int:
    try:
        st = os.stat(path)
    except OSError as e:
        raise BadInput(f"cannot read {path.name} ({_one_line(e)})", src) from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a link to a device under the file's name: never opened
        raise BadInput(f"{path.name} is {file_type(st.st_mode)}, not a regular file; not installed", src)
    return st.st_size


def _size_problem(fname: str, size: int, expected: int) -> str:
    return f"{fname} has {size} bytes, expected {expected}; not installed"


@contextlib.contextmanager
def _locked_folders(folders: Iterable[Path]) -> Iterator[None]:
    """Make each target folder and hold an exclusive lock on it: two installs never write one folder at once, so
    the temp files found there are a killed install's. BadInput when a folder cannot be made or written."""
    with contextlib.ExitStack() as stack:
        for folder in sorted(set(folders)):
            top = folder  # the outermost folder this install makes: removed again if the install fails
            while not os.path.lexists(top.parent) and top.parent != top:
                top = top.parent
            if not os.path.lexists(top):
                stack.enter_context(new_folder(top))
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            except OSError as e:
                if no_room(e):
                    raise write_failed(folder, e) from None
                raise BadInput(f"cannot write there ({e.strerror or type(e).__name__}); not installed",
                               folder) from None
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield


def _copy_verified(read: BinaryIO, out: BinaryIO, fname: str, digest: str, size: int, src: Path) -> None:
    """Stream `read` into `out`, hashing; never more than `size` bytes are written. BadInput when the bytes are
    not the catalogue's (length or sha256), or the source cannot be read."""
    h, n = hashlib.sha256(), 0
    while True:
        try:
            block = read.read(min(1 << 20, size + 1 - n))
        except READ_ERRORS as e:
            raise BadInput(f"cannot read {fname} from it ({_one_line(e)}); not installed", src) from None
        if not block:
            break
        n += len(block)
        if n > size:
            raise BadInput(f"{fname} is larger than its {size} bytes; not installed", src)
        h.update(block)
        out.write(block)
    if n != size:
        raise BadInput(_size_problem(fname, n, size), src)
    got = h.hexdigest()
    if got != digest:
        raise BadInput(f"{fname} has sha256 {got[:16]}..., expected {digest[:16]}...; not installed", src)


def _open_member(src: Path, item: Path | tarfile.TarInfo, tar: tarfile.TarFile | None) -> BinaryIO:
    if isinstance(item, Path):
        try:
            st = os.stat(item)
            if not stat.S_ISREG(st.st_mode):
                raise BadInput(f"{item.name} is {file_type(st.st_mode)}, not a regular file; not installed", src)
            return open(item, "rb")
        except OSError as e:
            raise BadInput(f"cannot read {item.name} ({_one_line(e)}); not installed", src) from None
    fh = tar.extractfile(item)
    if fh is None:
        raise BadInput(f"{item.name} is not a regular file in the tarball; not installed", src)
    return fh


def install(src: str | os.PathLike, names: Iterable[str] = ()) -> list[str]:
    """Install the named models (all whose files `src` holds, when none is named) from a folder or tarball.

    Returns the models installed. Every file is checked (size, sha256) while it is copied into a temp file, and
    only when all files of all the models are right are they renamed into place: a refused file leaves nothing
    written, of its model or any other. Models already installed are rewritten only if `src` has them too.
    """
    src = Path(src)
    names = list(names)
    for n in names:
        _check_name(n)
    st = _vet_source(src)
    wanted_all = _wanted(names or CATALOGUE)
    with contextlib.ExitStack() as stack:
        tar = None
        try:
            if stat.S_ISDIR(st.st_mode):
                found: dict = _scan_folder(src, wanted_all)
            else:
                fh = stack.enter_context(open(src, "rb"))
                tar = stack.enter_context(_open_tar(fh, src))
                found = _scan_tar(tar, src, wanted_all)
        except OSError as e:  # a folder that cannot be listed, a file that cannot be opened
            raise BadInput(f"cannot read ({_one_line(e)})", src) from None
        targets = names or [n for n in CATALOGUE if all(f in found for f in CATALOGUE[n]["files"])]
        if not targets:
            raise BadInput(f"holds the files of none of the models ({', '.join(CATALOGUE)})", src)
        plan: list[tuple[str, str, int, Path, object]] = []  # file, sha256, size, destination, source item
        for n in targets:
            missing = [f for f in CATALOGUE[n]["files"] if f not in found]
            if missing:
                raise BadInput(f"{', '.join(missing)} of {n} not found there", src)
            for fname, digest in CATALOGUE[n]["files"].items():
                size = CATALOGUE[n]["sizes"][fname]
                item = found[fname]
                # The size the source declares, before a byte is written (a tar header's for a member).
                declared = item.size if isinstance(item, tarfile.TarInfo) else _stat_size(item, src)
                if declared != size:
                    raise BadInput(_size_problem(fname, declared, size), src)
                plan.append((fname, digest, size, model_dir(n) / fname, item))
        _write_all(plan, src, tar, stack)
        return targets


def _write_all(plan: list, src: Path, tar: tarfile.TarFile | None, stack: contextlib.ExitStack) -> None:
    """Copy and check every planned file into a temp file, then commit them all; on any error discard them all."""
    stack.enter_context(_locked_folders(dest.parent for *_, dest, _item in plan))
    for *_, dest, _item in plan:
        remove_stale_temps(dest)  # a killed install's (we hold the folder's lock: no live install writes there)
    pending: list[AtomicFile] = []
    try:
        for fname, digest, size, dest, item in plan:
            pending.append(AtomicFile(dest))
            with _open_member(src, item, tar) as read, open(pending[-1].tmp, "wb") as out:
                _copy_verified(read, out, fname, digest, size, src)
        for f in pending:
            f.commit()
    except BaseException as e:
        for f in pending:
            f.discard()
        if isinstance(e, (BadInput, WriteFailed)) or not isinstance(e, OSError):
            raise
        if no_room(e):
            raise write_failed(dest, e) from None
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise BadInput(f"cannot write there ({e.strerror}); not installed", dest.parent) from None
        raise BadInput(f"cannot install {fname} ({_one_line(e)}); not installed", src) from None


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
