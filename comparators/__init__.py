"""Comparators: one module per answer shape, registered by name (`comparators.base.get`).

The modules are imported when a comparator is first asked for, not with this package."""
