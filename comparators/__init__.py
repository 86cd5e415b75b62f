"""Comparators: one module per answer shape, registered by name (`harness.diff.base.get`).

The modules are imported when a comparator is first asked for, not with this package."""
