"""The `pipeline` command: a thin dispatcher. Each sub-command lives in its own module and only parses."""

from __future__ import annotations

import sys

import click

from pipeline import __version__
from pipeline.cli.dataset import dataset
from pipeline.cli.demo import demo
from pipeline.cli.distill import distill
from pipeline.cli.extract import extract_cmd
from pipeline.cli.live import live_cmd
from pipeline.cli.run import export_cmd, run_cmd
from pipeline.cli.train import eval_cmd, train
from pipeline.errors import BadInput


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="pipeline")
def cli() -> None:
    """Skeleton action recognition that stays accurate on fast pose estimators.

    A teacher trained on high-quality (HQ) skeletons teaches a student that only sees low-quality (LQ)
    skeletons of the same clips (structural knowledge distillation). At inference only the fast estimator
    and the student run.
    """


cli.add_command(dataset)
cli.add_command(extract_cmd)
cli.add_command(train)
cli.add_command(eval_cmd)
cli.add_command(distill)
cli.add_command(demo)
cli.add_command(run_cmd)
cli.add_command(export_cmd)
cli.add_command(live_cmd)


def main() -> None:
    """Entry point: bad input -> one line and exit 2; an unexpected error -> traceback and exit 1."""
    try:
        # Without standalone mode click *returns* a command's `ctx.exit(n)` code instead of raising it.
        rc = cli.main(standalone_mode=False)
    except BadInput as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)
