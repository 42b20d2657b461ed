"""The `pipeline` command: a thin dispatcher. Each sub-command lives in its own module and only parses."""

from __future__ import annotations

import importlib
import sys

import click

from models.contract.errors import BadInput, WriteFailed
from pipeline import __version__

# The sub-commands: name -> "module:click command". Adding a command = its module in pipeline/cli/ plus one line
# here. A command's module is imported only when that command runs (or `--help` lists them all), so a command
# never pays for another's imports: `pipeline extract` and `pipeline run --onnx` start without torch.
COMMANDS = {
    "dataset": "pipeline.cli.dataset:dataset",
    "extract": "pipeline.cli.extract:extract_cmd",
    "train": "pipeline.cli.train:train",
    "eval": "pipeline.cli.train:eval_cmd",
    "distill": "pipeline.cli.distill:distill",
    "demo": "pipeline.cli.demo:demo",
    "run": "pipeline.cli.run:run_cmd",
    "export": "pipeline.cli.run:export_cmd",
    "calibrate": "pipeline.cli.calibrate:calibrate_cmd",
    "models": "pipeline.cli.models:models_cmd",
    "live": "pipeline.cli.live:live_cmd",
}


class LazyGroup(click.Group):
    """A click group whose commands are the COMMANDS table, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr = COMMANDS[cmd_name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="pipeline")
def cli() -> None:
    """Skeleton action recognition that stays accurate on fast pose estimators.

    A teacher trained on high-quality (HQ) skeletons teaches a student that only sees low-quality (LQ)
    skeletons of the same clips (structural knowledge distillation). At inference only the fast estimator
    and the student run.
    """


def main() -> None:
    """Entry point: bad input -> one line and exit 2; an output that could not be written (full disk) -> one
    line and exit 1; an unexpected error -> traceback and exit 1."""
    try:
        # Without standalone mode click *returns* a command's `ctx.exit(n)` code instead of raising it.
        rc = cli.main(standalone_mode=False)
    except BadInput as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(2)
    except WriteFailed as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        # One line, like every other error (click's own layout is Usage/Try/Error on three lines).
        message = " ".join(e.format_message().split())
        if isinstance(e, click.UsageError) and e.ctx is not None:
            message += f" (see `{e.ctx.command_path} --help`)"
        click.echo(f"Error: {message}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)
