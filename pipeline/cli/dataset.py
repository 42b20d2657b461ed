"""`pipeline dataset ...`: import public datasets to the pyskl pickle, inspect, corrupt, export."""

from __future__ import annotations

from pathlib import Path

import click

from estimators import DEFAULT
from models.contract.paths import vet_output
from pipeline.cli.estimator_opts import EstimatorChoice
from pipeline.cli.layout_opts import NAMES, layout_option, source_layout_option
from pipeline.data.catalog import export_dataset, import_dataset, summarize
from pipeline.data.corrupt import corrupt_dataset, parse_spec
from pipeline.data.importers import IMPORTERS
from pipeline.data.pyskl_io import load_dataset, save_dataset
from pipeline.extract.build import build_paired

LAYOUT_HELP = f"Layout: {NAMES}."


@click.group()
def dataset() -> None:
    """Import, inspect, corrupt and export skeleton datasets (pyskl/mmaction2 annotation pickles)."""


@dataset.command("import")
@click.argument("kind", type=click.Choice(list(IMPORTERS)))
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output pickle (.pkl).")
@layout_option
@source_layout_option
@click.option("--benchmark", default="xsub", show_default=True, type=click.Choice(["xsub", "xview", "xset"]),
              help="NTU only: which official split becomes train/test (xset: NTU-120 only). All are kept as "
                   "<benchmark>_train/_val splits too.")
@click.option("--labels", default=None, type=click.Path(path_type=Path),
              help="openpose-json only: CSV rows video,label[,split] (label: class name or 0-based index).")
@click.option("--keypoints", default=None, type=click.Path(path_type=Path),
              help="pyskl only: folder of PYSKL kpfiles for split-keypoint annotations (K400 HRNet release).")
@click.option("--max-persons", default=2, show_default=True, type=click.IntRange(1),
              help="openpose-json and split-keypoint pyskl: persons kept per clip.")
def import_cmd(kind: str, src: Path, out: Path, layout: str | None, source_layout: str | None,
               benchmark: str, labels: Path | None, keypoints: Path | None, max_persons: int) -> None:
    """Import SRC (a folder or file of KIND) into the pyskl annotation pickle OUT (KIND: see below)."""
    vet_output(out, inputs=[src])
    ds = import_dataset(kind, src, layout=layout, benchmark=benchmark, source_layout=source_layout,
                        labels=labels, keypoints=keypoints, max_persons=max_persons)
    for w in ds.warnings:
        click.echo(f"warning: {w}", err=True)
    save_dataset(ds, out)
    n = {k: len(v) for k, v in ds.split.items()}
    click.echo(f"wrote {out}: {len(ds.clips)} clips, {ds.num_classes} classes, layout {ds.layout.name}, "
               f"splits {n}")
    if ds.extra.get("skipped"):
        click.echo(f"skipped {len(ds.extra['skipped'])} files without any skeleton (listed under 'skipped')")


@dataset.command("info")
@click.argument("file", type=click.Path(path_type=Path))
@layout_option
@source_layout_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def info_cmd(file: Path, layout: str | None, source_layout: str | None, as_json: bool) -> None:
    """Classes, clips per split and class, frame-count statistics, layout and 2D/3D of FILE."""
    import json

    summary = summarize(load_dataset(file, layout, source_layout))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{file}: {summary['clips']} clips, {len(summary['classes'])} classes, layout "
               f"{summary['layout']} ({summary['joints']} joints, {summary['dims']}D), up to "
               f"{summary['max_persons']} person{'s' if summary['max_persons'] != 1 else ''}; layout "
               f"{summary['layout_from']}")
    f = summary["frames"]
    click.echo(f"frames per clip: min {f['min']}, median {f['median']}, mean {f['mean']:.1f}, max {f['max']}")
    splits = list(summary["per_split"])
    widths = [max(9, len(s) + 2) for s in splits]  # pyskl's split names (xview_train, ...) are long
    click.echo(f"{'class':<24}" + "".join(f"{s:>{w}}" for s, w in zip(splits, widths)))
    for i, name in enumerate(summary["classes"]):
        click.echo(f"{i:>3} {name[:20]:<20}" + "".join(f"{summary['per_split'][s][i]:>{w}}"
                                                      for s, w in zip(splits, widths)))
    click.echo(f"{'total':<24}" + "".join(f"{sum(summary['per_split'][s]):>{w}}" for s, w in zip(splits, widths)))


@dataset.command("corrupt")
@click.argument("hq", type=click.Path(path_type=Path))
@click.option("--spec", required=True,
              help="Corruption, e.g. drop=0.6,impute=3,jitter=0.02,framedrop=0.1[,profile=FILE.json].")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0),
              help="Random seed (a seed= in --spec wins).")
@layout_option
@source_layout_option
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output LQ pickle.")
def corrupt_cmd(hq: Path, spec: str, seed: int, layout: str | None, source_layout: str | None, out: Path) -> None:
    """Simulate low-quality skeletons from the HQ pickle (same clip ids and frame counts)."""
    vet_output(out, inputs=[hq])
    s = parse_spec(spec)
    ds = load_dataset(hq, layout, source_layout)
    save_dataset(corrupt_dataset(ds, s, seed), out)
    click.echo(f"wrote {out}: {len(ds.clips)} clips corrupted with {s} (seed {s.effective_seed(seed)})")


@dataset.command("export")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output: a .pkl (pyskl pickle, optionally converted with --layout) or a folder of .npz files.")
@layout_option
@source_layout_option
def export_cmd(file: Path, out: Path, layout: str | None, source_layout: str | None) -> None:
    """Export a pyskl pickle: to another pickle (e.g. in another layout) or one .npz per clip."""
    vet_output(out, folder=out.suffix != ".pkl", inputs=[file])
    n = export_dataset(file, out, layout, source_layout)
    click.echo(f"wrote {out}: {n} clips")



@dataset.command("build")
@click.option("--cache", "cache_dir", default="data_cache", show_default=True, type=click.Path(path_type=Path),
              help="Cache folder that `pipeline extract` filled (both --quality high and low).")
@click.option("--labels", required=True, type=click.Path(path_type=Path),
              help="CSV rows video,label[,split]; video paths relative to the CSV's folder, with their extension "
                   "(clips/a.mp4).")
@click.option("--out-hq", required=True, type=click.Path(path_type=Path), help="Output HQ pickle.")
@click.option("--out-lq", required=True, type=click.Path(path_type=Path), help="Output LQ pickle.")
@click.option("--layout", default=None, help=LAYOUT_HELP + " Converts both from the estimator's layout.")
@click.option("--estimator", default=DEFAULT, show_default=True, type=EstimatorChoice(),
              help="The estimator whose entries to pair: the --estimator given to `pipeline extract`.")
@click.option("--test-every", default=5, show_default=True, type=click.IntRange(2),
              help="Without a split column: every N-th clip of each class goes to the test split.")
def build_cmd(cache_dir: Path, labels: Path, out_hq: Path, out_lq: Path, layout: str | None, estimator: str,
              test_every: int) -> None:
    """Pair the HQ and LQ cache entries of the labelled videos into two pyskl pickles (same clips and frames)."""
    vet_output(out_hq, inputs=[labels]), vet_output(out_lq, inputs=[labels, out_hq])  # both before either is written
    hq, _ = build_paired(cache_dir, labels, out_hq, out_lq, layout=layout, estimator=estimator,
                         test_every=test_every)
    n = {k: len(v) for k, v in hq.split.items()}
    click.echo(f"wrote {out_hq} and {out_lq}: {len(hq.clips)} clips, {hq.num_classes} classes, layout "
               f"{hq.layout.name}, splits {n}")


# The kinds, listed from IMPORTERS (a docstring cannot be built from the dict).
import_cmd.help += "\n\n\b\n" + "\n".join(f"{k:<14} {imp.help}" for k, imp in IMPORTERS.items())
