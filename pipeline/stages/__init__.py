"""`pipeline.stages`."""
