"""No code path may unpickle a user file with the unrestricted loaders."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for pkg in ("pipeline", "estimators", "models", "bench") for p in (ROOT / pkg).rglob("*.py")]

# pickle.load/loads, pickle.Unpickler(...).load() outside the restricted unpickler, numpy's allow_pickle,
# torch.load without weights_only=True, joblib/dill/cloudpickle loads.
FORBIDDEN = [
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"\b(dill|cloudpickle|joblib)\.loads?\("), "third-party unpickler"),
    (re.compile(r"allow_pickle\s*=\s*True"), "numpy allow_pickle=True"),
    (re.compile(r"weights_only\s*=\s*False"), "torch.load(weights_only=False)"),
]


def test_sources_exist():
    assert len(SOURCES) > 10


def test_no_unrestricted_unpickling():
    hits = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for pattern, what in FORBIDDEN:
            for m in pattern.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                hits.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not hits, "\n".join(hits)


def test_every_torch_load_is_weights_only():
    hits = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(", text):
            # The call's argument list up to the matching parenthesis.
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            if "weights_only=True" not in text[m.end():i]:
                hits.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}")
    assert not hits, "torch.load without weights_only=True at: " + ", ".join(hits)


def test_restricted_unpickler_is_the_only_pickle_loader():
    users = [p for p in SOURCES if re.search(r"pickle\.Unpickler\b", p.read_text(encoding="utf-8"))]
    assert [p.relative_to(ROOT).as_posix() for p in users] == ["pipeline/pyskl_io.py"]
