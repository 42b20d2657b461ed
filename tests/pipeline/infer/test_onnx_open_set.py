"""`pipeline run --onnx`: the open-set verdict from the exported `features` output and the rule in the metadata,
the same as PyTorch's; older exports (logits only, no rule) still run without one; the ONNX path stays torch-free."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.contract.errors import BadInput
from models.contract.skeleton import Clip
from models.net.transforms import make_input, sample_indices
from models.openset import ENERGY, fit_rule
from pipeline.infer.onnx_export import FEATURES, METADATA_KEY, export_onnx, input_shape, load_onnx, parity
from pipeline.infer.prediction import OnnxPredictor, TorchPredictor, classify, window_bounds
from pipeline.infer.runner import open_set_record
from tests.support.run_files import CLASSES, tiny_checkpoint, with_rule
from tests.support.video_files import cut

ROOT = Path(__file__).resolve().parents[3]
WINDOWS = {"window": 0.5, "stride": 0.5}  # four windows per 60-frame clip


def fitted_rule(src: Path, dst: Path, threshold: float | None = None) -> Path:
    """`src` with an open-set rule fitted to its own pooled features of random inputs (a full precision matrix,
    not the identity, so the ONNX features' rounding reaches the distance as it does for a real model)."""
    model, meta = load_checkpoint(src)
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.normal(0, 1, size=input_shape(meta, 160)).astype(np.float32))
    with torch.inference_mode():
        _, f = model(x, return_features=True)
        feats = model.pool(f.float(), len(x)).numpy()
    labels = rng.integers(0, len(CLASSES), size=120)
    rule = fit_rule(feats[:120], labels, feats[120:], len(CLASSES)).to_dict()
    if threshold is not None:
        rule["threshold"] = threshold
    save_checkpoint(dst, model, layout=meta["layout"], classes=meta["classes"], model_config=meta["model_config"],
                    input_config=meta["input_config"], extra={"open_set": rule})
    return dst


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("onnx_open_set")
    plain = tiny_checkpoint(d / "plain.pt", seed=3)
    # The threshold at the median of the test clips' distances: half of them known, half not.
    probe = TorchPredictor(fitted_rule(plain, d / "probe.pt"))
    dist = [np.median(classify(kp, score, 30.0, probe, **WINDOWS).distance) for kp, score in clips(8)]
    ruled = fitted_rule(plain, d / "ruled.pt", threshold=float(np.median(dist)))
    export_onnx(ruled, d / "ruled.onnx")
    export_onnx(plain, d / "plain.onnx")
    # An energy rule, its threshold at the median of the same clips' energies: half known again.
    probe = TorchPredictor(with_rule(plain, d / "eprobe.pt", 0.0, ENERGY))
    dist = [np.median(classify(kp, score, 30.0, probe, **WINDOWS).distance) for kp, score in clips(8)]
    energy_pt = with_rule(plain, d / "energy.pt", float(np.median(dist)), ENERGY)
    export_onnx(energy_pt, d / "energy.onnx")
    return {"plain.pt": plain, "ruled.pt": ruled, "ruled.onnx": d / "ruled.onnx", "plain.onnx": d / "plain.onnx",
            "energy.pt": energy_pt, "energy.onnx": d / "energy.onnx"}


def clips(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random poses `[1, 60, 13, 2]` with scores; every other one spread far wider, so that some are far from
    the class means and some near."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        spread = 300 if i % 2 else 30
        kp = (150 + rng.normal(0, spread, size=(1, 60, 13, 2))).astype(np.float32)
        out.append((kp, rng.uniform(0.2, 1, size=(1, 60, 13)).astype(np.float32)))
    return out


def test_onnx_gives_the_pytorch_verdict_and_distances(files):
    torch_pred, onnx_pred = TorchPredictor(files["ruled.pt"]), OnnxPredictor(files["ruled.onnx"])
    assert onnx_pred.info.open_set is not None
    np.testing.assert_array_equal(onnx_pred.info.open_set.precision, torch_pred.info.open_set.precision)
    assert onnx_pred.info.open_set.threshold == torch_pred.info.open_set.threshold
    verdicts = []
    for kp, score in clips(8):
        a = classify(kp, score, 30.0, torch_pred, **WINDOWS)
        b = classify(kp, score, 30.0, onnx_pred, **WINDOWS)
        assert a.distance is not None and b.distance is not None and len(a.distance) == 4
        np.testing.assert_allclose(b.distance, a.distance, rtol=0, atol=1e-3)
        np.testing.assert_allclose(b.probs, a.probs, atol=1e-5)
        assert a.known is b.known
        ra, rb = open_set_record(a, torch_pred.info, score, 30.0), open_set_record(b, onnx_pred.info, score, 30.0)
        assert ra is not None and rb is not None
        assert ra["known"] is rb["known"] and ra["threshold"] == rb["threshold"]
        assert abs(ra["distance"] - rb["distance"]) <= 0.01 + 1e-9  # the record rounds to 2 decimals
        verdicts.append(a.known)
    assert True in verdicts and False in verdicts  # the rule really splits these clips


def test_onnx_gives_the_pytorch_energy_verdict(files, tmp_path: Path):
    """An energy rule travels in the metadata as it is in the checkpoint, scores the logits (-logsumexp) in both
    runtimes alike, and needs no `features` output."""
    torch_pred, onnx_pred = TorchPredictor(files["energy.pt"]), OnnxPredictor(files["energy.onnx"])
    assert onnx_pred.info.open_set == torch_pred.info.open_set and onnx_pred.info.open_set.kind == ENERGY
    props = json.loads({p.key: p.value for p in onnx.load(str(files["energy.onnx"])).metadata_props}[METADATA_KEY])
    assert set(props["open_set"]) == {"rule", "threshold", "keep", "n_fit", "n_calib"}
    no_features = OnnxPredictor(_strip(files["energy.onnx"], tmp_path / "logits_only.onnx", features=False,
                                       rule=True))
    verdicts = []
    for kp, score in clips(8):
        a = classify(kp, score, 30.0, torch_pred, **WINDOWS)
        b = classify(kp, score, 30.0, onnx_pred, **WINDOWS)
        c = classify(kp, score, 30.0, no_features, **WINDOWS)
        logits = onnx_pred.session.run(None, {onnx_pred.input_name: _inputs(kp, score, onnx_pred)})[0]
        np.testing.assert_allclose(b.distance, -np.log(np.exp(logits.astype(np.float64)).sum(1)), rtol=1e-9)
        np.testing.assert_allclose(b.distance, a.distance, rtol=0, atol=1e-3)
        np.testing.assert_array_equal(c.distance, b.distance)
        assert a.known is b.known is c.known
        verdicts.append(a.known)
    assert True in verdicts and False in verdicts


def _inputs(kp: np.ndarray, score: np.ndarray, pred: OnnxPredictor) -> np.ndarray:
    """The model inputs `classify` builds for `WINDOWS` (written out here, to score the logits independently)."""
    info = pred.info
    xs = []
    for s, e in window_bounds(kp.shape[1], 30.0, **WINDOWS):
        clip = Clip("window", 0, kp[:, s:e], score[:, s:e])
        xs.append(make_input(clip, info.layout, info.input_config,
                             sample_indices(e - s, info.input_config.length, train=False)[0]))
    return np.stack(xs)


def test_a_malformed_energy_rule_is_refused_in_one_line(files, tmp_path: Path):
    proto = onnx.load(str(files["energy.onnx"]))
    d = json.loads(proto.metadata_props[0].value)
    for name, bad, reason in (("kind", {"rule": "Energy"}, "unknown open-set rule 'Energy'"),
                              ("text", {"threshold": "x"}, "could not convert string to float: 'x'"),
                              ("nokeep", {"keep": None}, "")):
        rule = {k: v for k, v in (d["open_set"] | bad).items() if v is not None}
        proto.metadata_props[0].value = json.dumps(d | {"open_set": rule})
        onnx.save(proto, str(tmp_path / f"{name}.onnx"))
        with pytest.raises(BadInput) as err:
            load_onnx(tmp_path / f"{name}.onnx")
        msg = str(err.value)
        assert "\n" not in msg and msg.endswith(f"{name}.onnx: the ONNX model's open-set rule is unusable "
                                                f"({reason or 'the energy rule lacks keep'})")
    model, meta = load_checkpoint(files["energy.pt"])
    save_checkpoint(tmp_path / "bad.pt", model, layout=meta["layout"], classes=meta["classes"],
                    model_config=meta["model_config"], input_config=meta["input_config"],
                    extra={"open_set": dict(meta["extra"]["open_set"], threshold=float("inf"))})
    with pytest.raises(BadInput, match=r"bad.pt: the checkpoint's open-set rule is unusable \(open-set rule holds "
                                       r"non-finite numbers\)"):
        TorchPredictor(tmp_path / "bad.pt")
    with pytest.raises(BadInput, match=r"bad.pt: the checkpoint's open-set rule is unusable"):
        export_onnx(tmp_path / "bad.pt", tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_an_export_without_a_rule_has_features_but_no_verdict(files):
    session, meta = load_onnx(files["plain.onnx"])
    assert meta["open_set"] is None
    assert [o.name for o in session.get_outputs()] == ["logits", FEATURES]
    props = json.loads({p.key: p.value for p in onnx.load(str(files["plain.onnx"])).metadata_props}[METADATA_KEY])
    assert "open_set" not in props
    pred = OnnxPredictor(files["plain.onnx"])
    kp, score = clips(1)[0]
    res = classify(kp, score, 30.0, pred)
    assert res.known is None and res.distance is None
    assert open_set_record(res, pred.info, score, 30.0) is None


def _strip(src: Path, dst: Path, features: bool, rule: bool) -> Path:
    """`src` made to look like an older export: without the `features` output and/or the stored rule."""
    proto = onnx.load(str(src))
    if not features:
        keep = [o for o in proto.graph.output if o.name != FEATURES]
        del proto.graph.output[:]
        proto.graph.output.extend(keep)
    if not rule:
        props = {p.key: p.value for p in proto.metadata_props}
        d = json.loads(props[METADATA_KEY])
        d.pop("open_set")
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(d)
    onnx.save(proto, str(dst))
    return dst


def test_an_older_export_with_logits_only_still_runs(files, tmp_path: Path):
    old = _strip(files["ruled.onnx"], tmp_path / "old.onnx", features=False, rule=False)
    pred = OnnxPredictor(old)
    assert [o.name for o in pred.session.get_outputs()] == ["logits"] and pred.info.open_set is None
    kp, score = clips(1)[0]
    res = classify(kp, score, 30.0, pred, window=1.0)
    ref = classify(kp, score, 30.0, TorchPredictor(files["ruled.pt"]), window=1.0)
    np.testing.assert_allclose(res.probs, ref.probs, atol=1e-5)
    assert res.known is None and open_set_record(res, pred.info, score, 30.0) is None


def test_a_rule_without_features_or_that_does_not_fit_is_refused(files, tmp_path: Path):
    broken = _strip(files["ruled.onnx"], tmp_path / "broken.onnx", features=False, rule=True)
    with pytest.raises(BadInput, match=r"broken.onnx: the ONNX model's open-set rule is unusable \(the "
                                       r"mahalanobis-tied rule measures pooled features the model does not output\)"):
        load_onnx(broken)
    proto = onnx.load(str(files["ruled.onnx"]))
    d = json.loads(proto.metadata_props[0].value)
    d["open_set"]["means"] = d["open_set"]["means"][:-1]  # one class short
    proto.metadata_props[0].value = json.dumps(d)
    onnx.save(proto, str(tmp_path / "short.onnx"))
    with pytest.raises(BadInput, match=r"short.onnx: the ONNX model's open-set rule is unusable \(open-set rule "
                                       r"shapes \(3, "):
        load_onnx(tmp_path / "short.onnx")


def test_export_refuses_a_checkpoint_rule_that_does_not_fit(files, tmp_path: Path):
    model, meta = load_checkpoint(files["ruled.pt"])
    rule = dict(meta["extra"]["open_set"], precision=[[1.0]])  # 1 channel: the model has more
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, model, layout=meta["layout"], classes=meta["classes"], model_config=meta["model_config"],
                    input_config=meta["input_config"], extra={"open_set": rule})
    with pytest.raises(BadInput, match=r"bad.pt: the checkpoint's open-set rule is unusable \(open-set rule shapes"):
        export_onnx(bad, tmp_path / "bad.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


def test_parity_checks_the_features_too(files):
    model, meta = load_checkpoint(files["ruled.pt"])
    session, _ = load_onnx(files["ruled.onnx"])
    assert parity(model, session, meta) <= 1e-4

    class Shifted:  # the real session, but its features off by 0.5
        def get_inputs(self):
            return session.get_inputs()

        def get_outputs(self):
            return session.get_outputs()

        def run(self, names, feed):
            logits, feats = session.run(names, feed)
            return [logits, feats + 0.5]

    assert parity(model, Shifted(), meta) == pytest.approx(0.5, abs=1e-4)
    logits_only = SimpleNamespace(get_inputs=session.get_inputs, get_outputs=lambda: session.get_outputs()[:1],
                                  run=lambda names, feed: session.run(names, feed)[:1])
    assert parity(model, logits_only, meta) <= 1e-4  # an older graph: the logits alone


TORCH_FREE = """
import atexit, sys
atexit.register(lambda: print("torch imported:", "torch" in sys.modules, file=sys.stderr))
from pipeline.cli import main
sys.argv = ["pipeline", *sys.argv[1:]]
main()
"""


def test_run_onnx_flags_like_pytorch_without_importing_torch(shared_data: Path, files, tmp_path: Path):
    video = cut(shared_data / "videos" / "tai_chi.mp4", tmp_path / "tai_chi.mp4", 40)
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.pop("SKD_VERBOSE", None)
    runs = {}
    for opt in ("--model", "--onnx"):
        model = files["ruled.pt" if opt == "--model" else "ruled.onnx"]
        proc = subprocess.run([sys.executable, "-c", TORCH_FREE, "run", str(video), opt, str(model), "--json"],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert f"torch imported: {opt == '--model'}" in proc.stderr  # the check can tell the two apart
        runs[opt] = json.loads(proc.stdout)
    a, b = runs["--model"]["open_set"], runs["--onnx"]["open_set"]
    assert set(a) == set(b) == {"known", "distance", "threshold"}
    assert a["known"] is b["known"] and a["threshold"] == b["threshold"]
    assert abs(a["distance"] - b["distance"]) <= 0.01 + 1e-9  # rounded to 2 decimals in the record
    assert [x["label"] for x in runs["--model"]["labels"]] == [x["label"] for x in runs["--onnx"]["labels"]]
