"""The parity gate as a pytest plugin (`pytest11` entry point `parity`).

    pytest -m parity --parity-recordings recordings/ [--parity-candidate URL] [--parity-config F]
                     [--parity-login USER [--parity-password-file FILE]]

Recordings are judged once, on the controller (replayed against `--parity-candidate` when given,
else judged from the candidate answers they hold), and become one test item per route and one per
migration group: `parity::backtest[GET /api/backtest/results/{id}]`, `parity::backtest`, so
`-k backtest` works. A route item holds its group's rates; the group item also its minimum count.
A route whose exchanges were all skipped by the mirror policy (never mirrored) is reported as a
pytest skip with the reason, not a failure. Replaying recordings whose requests carry credentials
needs `--parity-login USER` (password from `--parity-password-file`, PARITY_PASSWORD or a prompt):
without it the run stops at once with a usage error. The judged exchanges go through the store
(redacted, in a temporary directory) like every recording, and the items are made from what it
holds by the one gate (`harness.judge.gate.gate_groups`). Under pytest-xdist the controller hands
that directory to the workers, so `-n auto` gives the same items and verdicts as a serial run.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from harness.config import Config
from harness.judge.gate import GateResult, Tally, evaluate, gate_groups

if TYPE_CHECKING:  # imported when the gate runs: a plain pytest run loads none of it
    from harness.replay.credentials import ServiceAccount

JUDGED_KEY = "parity_judged"
USAGE_ERROR = 2


def pytest_addoption(parser: pytest.Parser) -> None:
    """Command-line options, in their own group."""
    group = parser.getgroup("parity", "cryptobot-parity gate")
    group.addoption(
        "--parity-recordings",
        action="append",
        default=[],
        metavar="PATH",
        help="recordings (files or directories) to gate on; may be repeated",
    )
    group.addoption(
        "--parity-candidate",
        metavar="URL",
        help="replay the recordings against this candidate (else judge the recorded answers)",
    )
    group.addoption(
        "--parity-primary",
        metavar="URL",
        help="live primary, for routes whose answers age (latest candles, balances)",
    )
    group.addoption(
        "--parity-secondary",
        metavar="URL",
        help="live secondary Docker copy, for noise learning during the replay",
    )
    group.addoption("--parity-config", metavar="FILE", help="parity.toml (routes, gates)")
    group.addoption(
        "--parity-login",
        metavar="USER",
        help="service account the replay logs in with on each environment; its password comes "
        "from --parity-password-file, else PARITY_PASSWORD, else a prompt (never the command line)",
    )
    group.addoption(
        "--parity-password-file",
        metavar="FILE",
        help="file whose first line is the --parity-login password (keep it owner-only)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; on the controller, judge the recordings once."""
    config.addinivalue_line(
        "markers",
        "parity: parity gate (recordings judged, or replayed against --parity-candidate, per "
        "route and migration group)",
    )
    if hasattr(config, "workerinput"):
        judged = config.workerinput.get(JUDGED_KEY)
        config.stash[_judged_key] = Path(judged) if judged else None
        return
    recordings = config.getoption("parity_recordings")
    wants_parity = _selects_parity(config.getoption("markexpr") or "")
    if wants_parity and not recordings:
        _usage_error(
            "pytest -m parity needs something to gate on: --parity-recordings PATH (and "
            "optionally --parity-candidate URL). A gate that silently passes is worse than none."
        )
    config.stash[_judged_key] = _judge(config, recordings) if recordings else None


_judged_key = pytest.StashKey[Path | None]()


def _selects_parity(markexpr: str) -> bool:
    """Whether `-m` asks for the parity gate (`parity`, `parity and ...`; not `not parity`)."""
    return bool(re.search(r"(?<![\w-])parity(?![\w-])", markexpr)) and not re.search(
        r"\bnot\s+parity(?![\w-])", markexpr)


def pytest_configure_node(node: Any) -> None:
    """pytest-xdist hook: hand the judged recordings to each worker."""
    judged = node.config.stash.get(_judged_key, None)
    node.workerinput[JUDGED_KEY] = str(judged) if judged else ""


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the judged recordings (controller only)."""
    judged = config.stash.get(_judged_key, None)
    if judged and not hasattr(config, "workerinput"):
        shutil.rmtree(judged, ignore_errors=True)


def _judge(config: pytest.Config, recordings: list[str]) -> Path:
    """Judge (or replay) the recordings once into a temporary store; its directory."""
    from harness.config import load_config
    from harness.errors import UserError
    from harness.store.reader import iter_records
    from harness.store.writer import SegmentWriter

    store = Path(tempfile.mkdtemp(prefix="parity-judged-"))
    try:
        parity_config = load_config(config.getoption("parity_config"))
        candidate = config.getoption("parity_candidate")
        account = _account(config, parity_config, recordings) if candidate else None
        with SegmentWriter(store, prefix="judged") as writer:
            if candidate:
                from harness.mirror.policy import breakers_beside
                from harness.replay.runner import ReplayTargets, replay_records

                replay_records(
                    iter_records(recordings),
                    parity_config,
                    ReplayTargets(
                        candidate,
                        config.getoption("parity_primary"),
                        config.getoption("parity_secondary"),
                    ),
                    account=account,
                    on_exchange=writer.write,
                    breakers=breakers_beside(recordings),
                )
            else:
                from harness.judge.engine import Engine
                from harness.model import Exchange

                engine = Engine(parity_config)
                for record in iter_records(recordings):
                    writer.write(engine.judge(Exchange.from_dict(record)))
    except UserError as exc:
        shutil.rmtree(store, ignore_errors=True)
        _usage_error(str(exc))
    return store


def _usage_error(message: str) -> NoReturn:
    """Stop the run before any test with one line on stderr and exit status 2, the usage-error
    status of `parity replay` (so one CI script reads both the same way)."""
    pytest.exit(f"parity: {message}", returncode=USAGE_ERROR)


def _account(config: pytest.Config, parity_config: Config,
             recordings: list[str]) -> ServiceAccount | None:
    """The replay's service account; UserError when the recordings need one and none is given."""
    from harness.replay.credentials import ServiceAccount, require_login
    from harness.store.reader import iter_records

    account = ServiceAccount.from_sources(
        config.getoption("parity_login"), parity_config.replay,
        password_file=config.getoption("parity_password_file"),
        prompt=lambda message: _prompt(config, message),
        option="--parity-login",
    )
    require_login(account, iter_records(recordings), option="--parity-login")
    return account


def _prompt(config: pytest.Config, message: str) -> str | None:
    """The password typed on the terminal, with pytest's capture suspended; None without one."""
    import getpass
    import sys

    stdin = sys.__stdin__
    if stdin is None or not stdin.isatty():
        return None
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)
    try:
        return getpass.getpass(message)
    finally:
        if capture is not None:
            capture.resume_global_capture()


@pytest.hookimpl(tryfirst=True)  # before -m / -k deselection, so they apply to our items
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Append one gate item per route and per migration group of the judged recordings."""
    judged = config.stash.get(_judged_key, None)
    if not judged:
        return
    from harness.config import load_config
    from harness.store.reader import iter_records

    rules = load_config(config.getoption("parity_config")).gates
    parent = ParityGates.from_parent(session, name="parity")
    for group, gate in gate_groups(iter_records([judged]), rules).items():
        # A route only has to hold the rates; the group item checks the minimum count.
        for route, tally in gate.routes.items():
            items.append(ParityItem.from_parent(
                parent, name=f"{group}[{route}]", tally=tally, scope=route, whole_group=False,
                result=evaluate(tally, gate.rule.for_route()),
            ))
        items.append(ParityItem.from_parent(
            parent, name=group, tally=gate.tally, scope=group, whole_group=True,
            result=gate.result,
        ))


class ParityGates(pytest.Collector):
    """The parent of all gate items (their node ids read `parity::backtest[GET /api/...]`)."""

    def collect(self) -> list[pytest.Item]:
        return []  # items are made from the judged recordings in pytest_collection_modifyitems


class ParityGateFailure(Exception):
    """Raised by a gate item; its message is the readable summary."""


class ParityItem(pytest.Item):
    """One gate: a route's exchanges against its group's thresholds, or a whole group's."""

    def __init__(self, *, tally: Tally, result: GateResult, scope: str, whole_group: bool,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.tally = tally
        self.result = result
        self.scope = scope
        self.whole_group = whole_group
        self.add_marker("parity")

    def runtest(self) -> None:
        result = self.result
        if not result.passed:
            raise ParityGateFailure(self._summary(result))
        if not self.whole_group and self.tally.compared == 0:
            pytest.skip(f"{self.scope}: {self.tally.skipped_line()}")

    def _summary(self, result: GateResult) -> str:
        counts = ", ".join(f"{v} {n}" for v, n in sorted(self.tally.verdicts.items()))
        lines = [f"{self.scope}: {result.status.upper()} ({counts})"]
        lines += [f"  - {reason}" for reason in result.reasons]
        if self.tally.examples:
            lines.append("  examples:")
            lines += [f"    {example}" for example in self.tally.examples]
        return "\n".join(lines)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ParityGateFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return Path("parity"), None, self.name
