"""pytest plugin of cryptobot-parity (registered through the `pytest11` entry point)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers."""
    config.addinivalue_line("markers", "parity: parity gate tests")
