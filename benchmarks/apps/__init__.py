"""The apps the benchmarks compare Shoal with (each served as its own process)."""
