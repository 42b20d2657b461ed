"""`pipeline models`: list the pose weights no wheel ships, and install them from a folder, a tarball or npm."""

from __future__ import annotations

import click

from estimators.weights import CATALOGUE, install, install_npm, model_dir, state
from models.contract.errors import BadInput


@click.group("models", invoke_without_command=True)
@click.pass_context
def models_cmd(ctx: click.Context) -> None:
    """List the pose models whose weights are installed separately: installed or not, where, sha256 checked.

    \b
    blazepose-lite   BlazePose lite  (--model lite)     pose_landmark_lite.tflite
    blazepose-heavy  BlazePose heavy (--model heavy)    pose_landmark_heavy.tflite
    openpose-lite    Lightweight OpenPose (OpenVINO IR) human-pose-estimation-0001.{xml,bin}

    BlazePose full ships inside the mediapipe wheel and needs nothing. Nothing is ever downloaded while
    extracting: a tier whose weights are missing stops with the install command to run. BlazePose files go
    into the installed mediapipe package (the only folder its pose graph reads them from); the others into
    $SKD_MODELS_DIR (default ~/.cache/skd-pipeline/models).
    """
    if ctx.invoked_subcommand is not None:
        return
    for name, entry in CATALOGUE.items():
        st = state(name)
        why = st.problem()
        click.echo(f"{name:<16} {'installed' if why is None else 'missing':<10} {st.folder}")
        for f in st.files:
            check = "sha256 ok" if f.sha256_ok else ("sha256 WRONG" if f.present else "absent")
            click.echo(f"    {f.name:<34} {check:<12} {entry['files'][f.name]}")
        if why is not None:
            click.echo(f"    get it: {entry['how']}")


@models_cmd.command("install")
@click.argument("args", nargs=-1, metavar="[SRC] [NAME]...")
@click.option("--npm", "use_npm", is_flag=True,
              help="Fetch the BlazePose files with `npm pack @mediapipe/pose` (needs npm on the PATH and the "
                   "network); then every argument is a model NAME.")
def install_cmd(args: tuple[str, ...], use_npm: bool) -> None:
    """Install models from SRC, a folder (searched recursively) or a .tar/.tgz/.tar.gz holding their files.

    NAMEs: blazepose-lite, blazepose-heavy, openpose-lite; none = every model whose files SRC holds. Each file
    is checked against its sha256 before it is written (a wrong one is refused) and written atomically.

    \b
    pipeline models install ~/Downloads/mediapipe-pose-0.5.1675469404.tgz
    pipeline models install ./intel/human-pose-estimation-0001/FP16-INT8 openpose-lite
    pipeline models install --npm blazepose-heavy
    """
    if use_npm:
        done = install_npm(args)
    else:
        if not args:
            raise BadInput("give SRC (a folder or tarball with the model files), or --npm")
        done = install(args[0], args[1:])
    for name in done:
        click.echo(f"installed {name} in {model_dir(name)}")
