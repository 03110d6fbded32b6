"""Rendered kernel modules, one per layer definition."""
