"""The HTTP edge: receives client events and group-commits them to the bronze Delta table."""
