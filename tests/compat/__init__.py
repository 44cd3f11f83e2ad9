"""Compatibility tests: Shoal compared with the servers it stands in for."""
