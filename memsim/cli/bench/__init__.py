"""``memsim bench ...``: benchmarks that print tables (speed and accuracy, measured side by side)."""
