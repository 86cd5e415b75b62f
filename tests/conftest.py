"""Fixtures shared by the tests: real reference Cryptobot processes on free 127.0.0.1 ports."""

from __future__ import annotations

import pytest

from harness.processes import start_reference_app

ALL_DRIFTS = ("tz-offset", "token-lifetime", "float-order", "fee-rounding", "amount-precision",
              "list-order")


@pytest.fixture(scope="session")
def reference_factory(tmp_path_factory):
    """Start reference apps on demand; every one is stopped at the end of the session."""
    started = []

    def start(flavor: str, drifts=()):
        data_dir = tmp_path_factory.mktemp(f"reference-{flavor}")
        app = start_reference_app(flavor, drifts=drifts, data_dir=data_dir,
                                  log_path=data_dir / "app.log")
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()


@pytest.fixture(scope="module")
def docker_pair(reference_factory):
    """Two Docker-flavour copies: the primary and the secondary."""
    return reference_factory("docker"), reference_factory("docker")
