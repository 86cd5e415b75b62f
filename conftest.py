"""Root conftest: makes the parity pytest plugin active when the package is used from a checkout
without being installed (installed, it is already loaded through its `pytest11` entry point)."""

from __future__ import annotations

import os
from importlib.metadata import entry_points

_installed = any(point.value == "harness.testing.pytest_plugin"
                 for point in entry_points(group="pytest11"))
if not _installed or os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
    pytest_plugins = ["harness.testing.pytest_plugin"]
