"""Acquisition sources: frame protocol v1, file drop, test pattern."""
