"""Shoal's benchmarks: one run drives Shoal, its baselines and Eve with wrk.

``scripts/bench`` (or ``python -m benchmarks.run``) is the command; see
docs/benchmarks.md for the method and the latest figures.
"""
