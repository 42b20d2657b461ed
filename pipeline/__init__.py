"""`pipeline`: the command line, its stages, dataset import/export and the skeleton cache."""

__version__ = "0.1.0"
