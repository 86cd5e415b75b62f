"""Comparators: one module per answer shape, registered by name."""
