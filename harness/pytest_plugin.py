"""The parity gate as a pytest plugin (`pytest11` entry point `parity`).

    pytest -m parity --parity-recordings recordings/ [--parity-candidate URL] [--parity-config F]

Recordings are judged once, on the controller (replayed against `--parity-candidate` when given,
else judged from the candidate answers they hold), and become one test item per route and one per
migration group: `parity::backtest[GET /api/backtest/results/{id}]`, `parity::backtest`, so
`-k backtest` works. Each item asserts its group's gate. Under pytest-xdist the controller hands the
judged file to the workers, so `-n auto` gives the same items and verdicts as a serial run.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.gate import GateResult, GateRule, Tally, evaluate

JUDGED_KEY = "parity_judged"


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
        metavar="USER:PASSWORD",
        help="service account the replay logs in with on each environment",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; on the controller, judge the recordings once."""
    config.addinivalue_line(
        "markers",
        "parity: parity gate (recordings judged per route and group, or generated requests sent "
        "to primary and candidate)",
    )
    if hasattr(config, "workerinput"):
        judged = config.workerinput.get(JUDGED_KEY)
        config.stash[_judged_key] = Path(judged) if judged else None
        return
    recordings = config.getoption("parity_recordings")
    wants_parity = "parity" in (config.getoption("markexpr") or "")
    if wants_parity and not recordings and not config.getoption("parity_candidate"):
        raise pytest.UsageError(
            "pytest -m parity needs something to gate on: --parity-recordings PATH (and "
            "optionally --parity-candidate URL). A gate that silently passes is worse than none."
        )
    config.stash[_judged_key] = _judge(config, recordings) if recordings else None


_judged_key = pytest.StashKey[Path | None]()


def pytest_configure_node(node: Any) -> None:
    """pytest-xdist hook: hand the judged recordings to each worker."""
    judged = node.config.stash.get(_judged_key, None)
    node.workerinput[JUDGED_KEY] = str(judged) if judged else ""


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the judged file (controller only)."""
    judged = config.stash.get(_judged_key, None)
    if judged and not hasattr(config, "workerinput"):
        judged.unlink(missing_ok=True)


def _judge(config: pytest.Config, recordings: list[str]) -> Path:
    from harness.config import load_config
    from harness.errors import UserError
    from harness.store.reader import iter_records

    try:
        parity_config = load_config(config.getoption("parity_config"))
        fd, name = tempfile.mkstemp(prefix="parity-judged-", suffix=".jsonl")
        with os.fdopen(fd, "wb") as out:

            def keep(exchange) -> None:
                out.write(orjson.dumps(exchange.to_dict()) + b"\n")

            candidate = config.getoption("parity_candidate")
            if candidate:
                from harness.policy import breakers_beside
                from harness.replay.credentials import ServiceAccount
                from harness.replay.runner import ReplayTargets, replay_records

                replay_records(
                    iter_records(recordings),
                    parity_config,
                    ReplayTargets(
                        candidate,
                        config.getoption("parity_primary"),
                        config.getoption("parity_secondary"),
                    ),
                    account=ServiceAccount.from_sources(
                        config.getoption("parity_login"), parity_config.replay
                    ),
                    on_exchange=keep,
                    breakers=breakers_beside(recordings),
                )
            else:
                from harness.compare.engine import Engine
                from harness.model import Exchange

                engine = Engine(parity_config)
                for record in iter_records(recordings):
                    keep(engine.judge(Exchange.from_dict(record)))
    except UserError as exc:
        raise pytest.UsageError(f"parity: {exc}") from None
    return Path(name)


@pytest.hookimpl(tryfirst=True)  # before -m / -k deselection, so they apply to our items
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Append one gate item per route and per migration group of the judged recordings."""
    judged = config.stash.get(_judged_key, None)
    if not judged:
        return
    from harness.config import load_config

    gates = load_config(config.getoption("parity_config")).gates
    routes: dict[tuple[str, str], Tally] = defaultdict(Tally)
    with judged.open("rb") as lines:
        for line in lines:
            record = orjson.loads(line)
            routes[(record.get("group") or "other", record.get("route") or "?")].add(record)
    groups: dict[str, Tally] = defaultdict(Tally)
    for (group, _), tally in sorted(routes.items()):
        groups[group].merge(tally)
    parent = ParityGates.from_parent(session, name="parity")
    for group in sorted(groups):
        rule = _rule(gates, group)
        for (route_group, route), tally in sorted(routes.items()):
            if route_group == group:
                items.append(ParityItem.from_parent(
                    parent, name=f"{group}[{route}]", tally=tally, rule=rule, scope=route,
                    whole_group=False,
                ))
        items.append(ParityItem.from_parent(
            parent, name=group, tally=groups[group], rule=rule, scope=group, whole_group=True,
        ))


class ParityGates(pytest.Collector):
    """The parent of all gate items (their node ids read `parity::backtest[GET /api/...]`)."""

    def collect(self) -> list[pytest.Item]:
        return []  # items are made from the judged recordings in pytest_collection_modifyitems


def _rule(gates: dict[str, Any], group: str) -> GateRule:
    gate = gates.get(group)
    if gate is None:
        return GateRule()
    return GateRule(gate.max_mismatch_rate, gate.min_exchanges, gate.allow_untestable)


class ParityGateFailure(Exception):
    """Raised by a gate item; its message is the readable summary."""


class ParityItem(pytest.Item):
    """One gate: a route's exchanges against its group's thresholds, or a whole group's."""

    def __init__(self, *, tally: Tally, rule: GateRule, scope: str, whole_group: bool, **kw):
        super().__init__(**kw)
        self.tally = tally
        self.rule = rule
        self.scope = scope
        self.whole_group = whole_group
        self.add_marker("parity")

    def runtest(self) -> None:
        result = evaluate(self.tally, self.rule)
        if self.whole_group:
            ok = result.passed
        else:
            # A route only has to hold the rates; the group item checks the minimum count.
            ok = result.status in ("ready",) or (
                result.status == "not ready" and all("compared exchanges" in r for r in
                                                     _blocking(result))
            )
        if not ok:
            raise ParityGateFailure(self._summary(result))

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


def _blocking(result: GateResult) -> list[str]:
    return [r for r in result.reasons if not r.startswith("finding:")]
