"""The two layout options every command that reads a pickle shares: what the file IS, and what to work in."""

from __future__ import annotations

import click

NAMES = "coco17, blazepose33, penn13, ntu25, openpose18, body25, or a custom layout .json file"

layout_option = click.option(
    "--layout", default=None, metavar="NAME|FILE.json",
    help=f"Layout to work in ({NAMES}). Clips in another layout are converted to it by joint name; a pickle "
         "that stores no layout (as PYSKL/MMAction2 write them) and has this joint count is read as it. "
         "Default: the pickle's own.")

source_layout_option = click.option(
    "--source-layout", default=None, metavar="NAME|FILE.json",
    help="What the pickle's clips ARE, whatever the file stores or its joint count suggests (needed only to "
         "convert a pickle that stores no layout, e.g. --source-layout coco17 --layout my17.json).")
