"""`parity demo`: the whole harness end to end against the reference Cryptobot.

Three reference processes (Docker primary and secondary, native candidate with drifts), the shadow
proxy in front, realistic sessions plus hypothesis-generated edge requests through it, then the
gate, the HTML report and a terminal summary. Everything it starts is stopped, also on Ctrl-C."""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from harness.config import Config, load_config
from harness.datastate.findings import groups_whose_data_differ
from harness.demo.data_state import run_data_state
from harness.demo.traffic import CryptobotSession, TrafficStats
from harness.errors import UserError
from harness.judge.gate import UNGROUPED, GateResult, Tally, gate_groups
from harness.mirror.transport import request_headers
from harness.model import Body, Request
from harness.processes import ManagedProcess, free_port, start_reference_app
from harness.routes import GROUPS
from harness.shadow import counters as c
from harness.store.reader import iter_records

DEFAULT_DRIFTS = ("tz-offset", "token-lifetime", "fee-rounding", "amount-precision",
                  "float-order", "list-order")
# Beyond the proxy's drain: its workers' SIGTERM grace and its own exit.
STOP_MARGIN_S = 30.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What `parity demo` was asked for."""

    out: Path = Path("reports/demo.html")
    drifts: tuple[str, ...] = DEFAULT_DRIFTS
    sessions: int = 6
    edge_requests: int = 30
    seed: int = 7
    keep_recordings: Path | None = None
    drain_s: float | None = None  # the proxy's --drain; [shadow] drain_s when None


@dataclass(slots=True)
class DemoResult:
    """What the demo found: per group the gate's result and counts."""

    groups: dict[str, tuple[GateResult, Tally]]
    report: Path
    client_errors: list[str]
    requests: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)  # the proxy's final accounting
    data_differ: list[str] = field(default_factory=list)  # groups whose data gate is not ready

    @property
    def answered(self) -> int:
        """Requests the proxy answered (the client's plus the launcher's health checks)."""
        return self.counts.get(c.ANSWERED, 0)

    @property
    def not_ready(self) -> list[str]:
        return [g for g, (result, _) in self.groups.items() if not result.passed]


def edge_requests(count: int, seed: int) -> list[Request]:
    """Hypothesis-generated edge requests (orders with up to 8 decimals, odd candle ranges);
    derandomized, so the same seed and count give the same requests."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from harness.testing.requests import ohlcv_requests, order_requests

    collected: list[Request] = []

    @settings(max_examples=count, derandomize=True, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), deadline=None)
    @given(st.one_of(order_requests(), ohlcv_requests()))
    def collect(request: Request) -> None:
        collected.append(request)

    collect()
    random.Random(seed).shuffle(collected)
    return [_own_order_id(request, i) for i, request in enumerate(collected[:count])]


def _own_order_id(request: Request, index: int) -> Request:
    """`request` with a client_order_id of its own when it is an order: hypothesis draws the
    simplest id (`prop-000000000000`) again and again, and to the proxy a repeated id is a
    client's retry, rightly never sent twice; the demo's edge orders are distinct orders."""
    if request.method != "POST" or not request.body.text:
        return request
    order = orjson.loads(request.body.text)
    if not isinstance(order, dict) or "client_order_id" not in order:
        return request
    order["client_order_id"] = f"{order['client_order_id']}-{index}"
    return replace(request, body=Body.from_bytes(orjson.dumps(order)))


def _drive(base_url: str, options: DemoOptions, console: Console) -> TrafficStats:
    stats = TrafficStats()
    edges = edge_requests(options.edge_requests, options.seed) if options.edge_requests else []
    with Progress(TextColumn("[bold]traffic"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), console=console, transient=True) as progress:
        task = progress.add_task("user sessions", total=options.sessions + len(edges))
        with httpx.Client(base_url=base_url, timeout=30) as client:
            for number in range(options.sessions):
                CryptobotSession(client, random.Random(options.seed * 1000 + number),
                                 stats).run()
                progress.advance(task)
            progress.update(task, description="edge requests")
            for request in edges:
                stats.note(client.request(request.method, request.path, params=tuple(request.query),
                                          headers=request_headers(request),
                                          content=request.body.raw or None))
                progress.advance(task)
    return stats


def gate_recordings(recordings: Path, config: Config) -> dict[str, tuple[GateResult, Tally]]:
    """The gate of every migration group (the catch-all `other` aside: the launcher's health
    checks are not the demo's traffic)."""
    gates = gate_groups(iter_records([recordings]), config.gates, include=GROUPS)
    return {group: (gate.result, gate.tally) for group, gate in gates.items()
            if group != UNGROUPED}


def run_demo(options: DemoOptions, console: Console | None = None) -> DemoResult:
    """Run the demo; raises UserError (or ProcessError) when the demo itself fails."""
    console = console or Console(stderr=True)
    unknown = set(options.drifts) - set(DEFAULT_DRIFTS)
    if unknown:
        raise UserError(f"--drift: unknown drift {sorted(unknown)[0]!r} "
                        f"(known: {', '.join(DEFAULT_DRIFTS)})")
    started = time.perf_counter()
    config = load_config()
    work = Path(tempfile.mkdtemp(prefix="parity-demo-"))
    recordings = options.keep_recordings or work / "recordings"
    try:
        with ExitStack() as stack:
            console.print("[bold]parity demo[/]: starting the reference Cryptobot "
                          "(docker primary, docker secondary, native candidate"
                          + (f" with drifts {', '.join(options.drifts)}" if options.drifts
                             else ", no drift") + ")")
            apps = {}
            for name, flavor, drifts in (("primary", "docker", ()),
                                         ("secondary", "docker", ()),
                                         ("candidate", "native", options.drifts)):
                # The copies mirrored to are switched to dry-run mode, the primary stays live.
                app = start_reference_app(flavor, drifts=drifts, seed=options.seed,
                                          data_dir=work / name, log_path=work / f"{name}.log",
                                          env={"CRYPTOBOT_DRY_RUN": str(name != "primary")})
                stack.callback(app.stop)
                apps[name] = app
            port = free_port()
            drain = config.shadow.drain_s if options.drain_s is None else options.drain_s
            proxy = ManagedProcess(
                [sys.executable, "-m", "harness.cli", "shadow",
                 "--primary", apps["primary"].base_url, "--candidate", apps["candidate"].base_url,
                 "--secondary", apps["secondary"].base_url, "--listen", f"127.0.0.1:{port}",
                 "--recordings", str(recordings), "--drain", f"{drain:g}"],
                health_url=f"http://127.0.0.1:{port}/health", log_path=work / "shadow.log",
            ).start()
            stack.callback(proxy.stop, drain + STOP_MARGIN_S)
            console.print(f"shadow proxy on 127.0.0.1:{port}; sending traffic through it")
            stats = _drive(f"http://127.0.0.1:{port}", options, console)
            console.print(f"{stats.requests} requests answered by the primary through the proxy, "
                          f"{len(stats.errors)} client errors; waiting for the mirrors to finish")
            data_state = run_data_state(apps["primary"].base_url, work / "primary", work,
                                        drifted=bool(options.drifts), console=console)
            code = proxy.stop(drain + STOP_MARGIN_S)  # SIGTERM: the proxy drains its workers
            if code not in (0, -15):
                raise UserError(f"the shadow proxy failed (exit {code}):\n"
                                f"{proxy.log_tail()}")
        groups = gate_recordings(recordings, config)
        from harness.report import build_report
        from harness.report.sources import shadow_counters

        options.out.parent.mkdir(parents=True, exist_ok=True)
        build_report([recordings], options.out, gates=config.gates,
                     title="parity demo: reference Cryptobot, Docker vs native",
                     data_state=data_state)
        result = DemoResult(groups, options.out, stats.errors, stats.requests,
                            time.perf_counter() - started, shadow_counters([recordings]) or {},
                            groups_whose_data_differ(data_state or {}))
    except BaseException:
        console.print(f"[red]parity demo failed; the processes' logs are kept in {work}[/]")
        raise
    shutil.rmtree(work, ignore_errors=True)
    return result


def print_summary(result: DemoResult, console: Console) -> None:
    """Per migration group: ready or not, the top finding, the counts."""
    table = Table(title="Cutover readiness per migration group", show_lines=False)
    for column in ("group", "verdict", "compared", "failing", "noise-only", "top findings"):
        table.add_column(column, overflow="fold")
    for group, (gate, tally) in result.groups.items():
        colour = "green" if gate.passed else "red" if gate.status == "not ready" else "yellow"
        findings = [r.removeprefix("finding: ") for r in gate.reasons if r.startswith("finding:")]
        if not findings and not gate.passed:
            findings = list(gate.reasons[:1])
        finding = "\n".join(f[:90] for f in findings[:3])
        table.add_row(group, f"[{colour}]{gate.status.upper()}[/]", str(tally.compared),
                      str(tally.failing), str(tally.verdicts.get("noise-only", 0)),
                      finding)
    console.print(table)
    blocked = [", ".join(result.not_ready)] if result.not_ready else []
    if result.data_differ:
        blocked.append(f"data differ: {', '.join(result.data_differ)}")
    verdict = ("[bold green]READY for cutover[/]" if not blocked
               else f"[bold red]NOT READY[/]: {'; '.join(blocked)}")
    console.print(f"{verdict}  ({result.requests} requests, {result.seconds:.0f} s, "
                  f"{len(result.client_errors)} client errors)")
    console.print(f"shadow proxy: {c.accounting_line(result.counts)}")
    console.print(f"report: {result.report}")
