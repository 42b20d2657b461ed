"""`models.training`."""
