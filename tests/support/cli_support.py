"""Helpers for the reliability tests: run the real `pipeline` console script, read its one-line error, and list
the files a command left behind. Imported by tests/test_bad_input_catalogue.py, test_interruption.py and
test_security.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from pipeline.cli import COMMANDS, cli

# The sub-commands the CLI has right now: cases for commands still being written activate when they land.
LANDED = frozenset(COMMANDS)


def console_script() -> list[str]:
    """The installed `pipeline` entry point beside this interpreter (what a user runs), else `python -m`."""
    script = Path(sys.executable).parent / "pipeline"
    if script.is_file():
        return [str(script)]
    found = shutil.which("pipeline")
    return [found] if found else [sys.executable, "-m", "pipeline"]


def pipeline_env() -> dict[str, str]:
    # Third-party deprecation warnings are not our messages; one torch thread keeps runs light and deterministic.
    return dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")


def run_pipeline(*args: str | os.PathLike, timeout: float = 300, cwd: Path | None = None
                 ) -> subprocess.CompletedProcess:
    return subprocess.run([*console_script(), *map(os.fspath, args)], capture_output=True, encoding="utf-8",
                          errors="replace", env=pipeline_env(), timeout=timeout, cwd=cwd)


def popen_pipeline(*args: str | os.PathLike, **kw) -> subprocess.Popen:
    return subprocess.Popen([*console_script(), *map(os.fspath, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, encoding="utf-8", errors="replace", env=pipeline_env(), **kw)


def visible_lines(stream: str) -> list[str]:
    """What a terminal shows: a progress bar redraws its line with \\r, so only the text after the last \\r."""
    lines = [line.rsplit("\r", 1)[-1].strip() for line in stream.split("\n")]
    return [line for line in lines if line]


def without_fallback_note(lines: list[str]) -> list[str]:
    """`lines` less the note `run`/`live` print where BlazePose lite is not installed (a fresh clone) and they use
    the wheel's full model: tests of the output contract then hold with and without the weights."""
    return [ln for ln in lines if not (ln.startswith("note: blazepose-lite: ") and "Using BlazePose full" in ln)]


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """Assert the bad-input contract (exit 2, no traceback, exactly one line on stderr) and return that line."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = visible_lines(proc.stderr)
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr}"
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


def snapshot(root: Path) -> set[str]:
    """Every file (not folder) under `root`, hidden temp files included, as paths relative to it."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def new_files(before: set[str], root: Path) -> list[str]:
    """Files that appeared under `root`; a cache's per-entry `.lock` files are not entries and are allowed."""
    return sorted(f for f in snapshot(root) - before if not f.endswith(".lock"))


def invoke(*args) -> str:
    """Run a command in this process (click's runner); its stdout, or the exception it raised (BadInput...)."""
    result = CliRunner().invoke(cli, [str(a) for a in args], standalone_mode=False, catch_exceptions=True)
    if result.exception is not None:
        raise result.exception
    return result.stdout
