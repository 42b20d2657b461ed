"""`pipeline.extract`."""
