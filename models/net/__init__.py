"""`models.net`."""
