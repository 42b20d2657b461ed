"""`pipeline.data`."""
