"""Benchmarks: deploy, re-run and gateway figures against their floors, measured side by side."""
