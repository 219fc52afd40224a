"""I/O drivers: the only code that performs the effects flows yield."""
