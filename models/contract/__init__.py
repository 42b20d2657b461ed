"""`models.contract`."""
