"""`pipeline.infer`."""
