"""Fixtures shared by the tests: real reference Cryptobot processes on free 127.0.0.1 ports."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import pytest

from harness.processes import ReferenceApp, start_reference_app

ReferenceFactory = Callable[..., ReferenceApp]


@pytest.fixture(scope="session")
def reference_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceFactory]:
    """`start(flavor, drifts=(), *, seed=7, wait=True, dry_run=None)` starts a reference app with
    its own data dir and log (kept under pytest's tmp dir); every app is stopped at the end of the
    session. With `wait=False`, call `app.wait_healthy()` before using it (to start several at
    once). `dry_run` sets the trade service's switch at start (default: on for native only)."""
    started: list[ReferenceApp] = []

    def start(flavor: str, drifts: Sequence[str] = (), *, seed: int = 7,
              wait: bool = True, dry_run: bool | None = None) -> ReferenceApp:
        data_dir = tmp_path_factory.mktemp(f"reference-{flavor}")
        env = None if dry_run is None else {"CRYPTOBOT_DRY_RUN": str(dry_run)}
        app = start_reference_app(flavor, drifts=drifts, seed=seed, data_dir=data_dir,
                                  log_path=data_dir / "app.log", wait=wait, env=env)
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()


@pytest.fixture(scope="module")
def docker_pair(reference_factory: ReferenceFactory) -> tuple[ReferenceApp, ReferenceApp]:
    """Two Docker-flavour copies, the primary and the secondary (started side by side)."""
    primary = reference_factory("docker", wait=False)
    secondary = reference_factory("docker", wait=False)
    primary.wait_healthy()
    secondary.wait_healthy()
    return primary, secondary


@pytest.fixture(scope="session", autouse=True)
def redaction_key_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tests' redaction key lives in pytest's tmp dir, never in the user's ~/.config; the
    processes the tests start inherit it, so recording and replay share it as they should."""
    path = str(tmp_path_factory.mktemp("redaction-key") / "redaction.key")
    os.environ.setdefault("PARITY_REDACTION_KEY_FILE", path)
    return os.environ["PARITY_REDACTION_KEY_FILE"]
