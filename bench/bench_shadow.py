"""What the shadow proxy costs production, measured side by side in one run.

    python bench/bench_shadow.py [--paced-seconds 10] [--saturated-seconds 5] [--rounds 1]

The proxy under test runs pinned to core 0; the load generator, the upstreams and the mirror
workers run on core 1 (the workers move off the proxy's core by themselves, at a lower priority).
Upstreams are tiny asyncio HTTP servers started by this script (a fixed JSON answer, optionally
half a second late; `GET /__count` says how many requests one answered). Configurations:

    direct                the primary without a proxy (the floor)
    mitmdump              plain `mitmdump --mode reverse:PRIMARY`
    shadow fast           `parity shadow`, candidate answering at once
    shadow slow 500 ms    candidate answering after 500 ms
    shadow hanging        candidate accepting connections and requests, never answering
    shadow down           candidate refusing connections

Loads: paced (an open-loop Python client at --rate req/s; latency counted from each request's
scheduled time; p50/p99 over every request of all rounds pooled) and saturated (wrk, 16
connections; wrk's percentiles, medians over the rounds). Reported per cell: requests/s, p50/p99
latency, the proxy's CPU µs per request (the workers' separately), and the share of requests the
candidate received (mirrors delivered). Goals checked at the end:

    saturated, shadow with mirroring on ≥ 1.5 × plain mitmdump
    paced, candidate fast or slow: ≥ 99 % of mirrors delivered
    paced, p99 with the candidate slow, hanging or down ≤ 1.10 × p99 with it fast

All configurations run at once and take turns, round after round (medians are reported), so a noisy
neighbour on a shared machine hits them alike. The shadow proxies run with production defaults but
`--queue-size 2000` and `--drain 2`, so a slow candidate's backlog after a saturated run drains in
seconds. Needs Linux, 2 cores, `taskset` and `wrk` (apt-get install -y wrk). Loopback only; about
6 minutes with the defaults (`--loads paced` alone: about 3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from harness.processes import ManagedProcess, free_port

PROXY_CORE, OTHER_CORE = 0, 1
PATH = "/api/v1/ticker/BTC-USDT"  # a route the default table does not name: json, mirrored
BODY = (b'{"symbol":"BTC/USDT","bid":67321.5,"ask":67322.0,"last":67321.8,'
        b'"volume_24h":15234.123,"timestamp":"2024-05-31T22:00:00Z"}')
WRK_CONNECTIONS = 16
PACED_CONNECTIONS = 16


# --- the upstream server (run as `bench_shadow.py --serve PORT DELAY`) -----------------------


class _Upstream(asyncio.Protocol):
    """HTTP/1.1 keep-alive, every request answered with BODY after `delay` seconds (a negative
    delay: counted, never answered, the connection held open: a hanging candidate)."""

    count = 0

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            length = 0
            if (at := head.find(b"\r\ncontent-length:")) >= 0:
                length = int(head[at + 17:].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            if head.startswith(b"get /__count"):
                self._answer(str(_Upstream.count).encode())
                continue
            _Upstream.count += 1
            if self.delay < 0:
                continue
            if self.delay:
                asyncio.get_running_loop().call_later(self.delay, self._answer, BODY)
            else:
                self._answer(BODY)

    def _answer(self, body: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
                                 + body)


async def _serve(port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Upstream(delay), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# --- the paced load generator (run as `bench_shadow.py --paced URL RATE SECONDS`) -----------


async def _paced(url: str, rate: float, seconds: float) -> dict:
    target = httpx.URL(url)
    request = (f"GET {target.raw_path.decode()} HTTP/1.1\r\nHost: {target.host}:{target.port}"
               f"\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue = asyncio.Queue()

    async def connect():
        return await asyncio.open_connection(target.host, target.port)

    for _ in range(PACED_CONNECTIONS):
        idle.put_nowait(await connect())
    latencies: list[float] = []
    errors = 0

    async def one(scheduled: float) -> None:
        nonlocal errors
        reader, writer = await idle.get()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            latencies.append(loop.time() - scheduled)
        except (OSError, asyncio.IncompleteReadError, AttributeError):
            errors += 1
            writer.close()
            reader, writer = await connect()
        finally:
            idle.put_nowait((reader, writer))

    tasks = []
    start = loop.time() + 0.05
    for number in range(int(rate * seconds)):
        scheduled = start + number / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    latencies.sort()
    n = len(latencies)
    return {"requests": n, "errors": errors, "rps": n / seconds,
            "p50": latencies[n // 2] * 1000, "p99": latencies[min(n - 1, int(n * 0.99))] * 1000,
            "latencies_ms": [round(value * 1000, 4) for value in latencies]}


# --- the harness -------------------------------------------------------------------------------


def pinned(core: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv]


def upstream(delay: float = 0.0) -> tuple[ManagedProcess, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess(pinned(OTHER_CORE, [sys.executable, __file__, "--serve", str(port),
                                                 str(delay)]), health_url=url + "/__count")
    return process.start(), url


def count(url: str) -> int:
    return int(httpx.get(url + "/__count").text)


def start_proxy(kind: str, primary: str, candidate: str | None, work: Path,
                extra: tuple[str, ...] = ()):
    port = free_port()
    if kind == "mitmdump":
        argv = [str(Path(sys.executable).parent / "mitmdump"), "-q", "--mode",
                f"reverse:{primary}", "--listen-host", "127.0.0.1", "--listen-port", str(port)]
    else:
        argv = [sys.executable, "-m", "harness.cli", "shadow", "--primary", primary,
                "--candidate", candidate, "--listen", f"127.0.0.1:{port}", "--recordings",
                str(work / f"rec-{port}"), "--timeout", "2", "--drain", "2",
                "--queue-size", "2000", *extra]
    process = ManagedProcess(pinned(PROXY_CORE, argv), log_path=work / f"proxy-{port}.log",
                             health_url=f"http://127.0.0.1:{port}/__count").start()
    return process, f"http://127.0.0.1:{port}"


def cpu_seconds(process: psutil.Process | None) -> tuple[float, float]:
    """CPU seconds of the proxy process and of its children (the workers)."""
    if process is None:
        return 0.0, 0.0
    own = process.cpu_times()
    children = 0.0
    for child in process.children(recursive=True):
        try:
            times = child.cpu_times()
            children += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return own.user + own.system, children


def saturated(url: str, seconds: int) -> dict:
    out = subprocess.run(pinned(OTHER_CORE, ["wrk", "-t1", f"-c{WRK_CONNECTIONS}",
                                             f"-d{seconds}s", "--latency", url + PATH]),
                         capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)\b", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50": ms("50"), "p99": ms("99"),
            "errors": (int(errors.group(1)) if errors else 0)
            + (sum(map(int, socket_errors.groups())) if socket_errors else 0)}


def paced(url: str, seconds: float, rate: float) -> dict:
    out = subprocess.run(pinned(OTHER_CORE, [sys.executable, __file__, "--paced", url + PATH,
                                             str(rate), str(seconds)]),
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def settle(url: str | None, timeout_s: float = 10.0) -> None:
    """Wait until the candidate stops receiving mirrors (the workers caught up)."""
    if url is None:
        time.sleep(1.0)
        return
    deadline, last, stable_since = time.monotonic() + timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        now = count(url)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since > 0.8:
            return
        time.sleep(0.2)


@dataclass
class Cell:
    """One configuration under one load, over the rounds."""

    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    proxy_us: list[float] = field(default_factory=list)
    worker_us: list[float] = field(default_factory=list)
    delivered: list[float] = field(default_factory=list)
    samples_ms: list[float] = field(default_factory=list)  # paced: every request, all rounds
    errors: int = 0

    def add(self, result: dict, cpu: tuple[float, float], delivered: float | None) -> None:
        self.rps.append(result["rps"])
        self.p50.append(result["p50"])
        self.p99.append(result["p99"])
        self.errors += result["errors"]
        self.samples_ms.extend(result.get("latencies_ms", ()))
        if cpu[0]:
            self.proxy_us.append(cpu[0] / max(result["requests"], 1) * 1e6)
        if cpu[1]:
            self.worker_us.append(cpu[1] / max(result["requests"], 1) * 1e6)
        if delivered is not None:
            self.delivered.append(delivered)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def latency(cell: Cell, what: str) -> float:
    """p50 or p99: over every paced request of all rounds pooled (a p99 from a few thousand
    samples, not the median of per-round p99s that rest on a handful each); saturated runs
    report wrk's per-run percentiles, medians over the rounds."""
    if cell.samples_ms:
        return percentile(cell.samples_ms, 0.5 if what == "p50" else 0.99)
    return median(getattr(cell, what))


@dataclass
class Target:
    """A configuration: where the load goes, its proxy, the candidate that counts mirrors."""

    name: str
    url: str
    process: ManagedProcess | None = None
    counted: str | None = None

    @property
    def handle(self) -> psutil.Process | None:
        return psutil.Process(self.process.pid) if self.process else None


def measure(target: Target, load: str, args, cells: dict) -> None:
    """One run of `load` against `target`, added to its cell."""
    handle = target.handle
    before_cpu = cpu_seconds(handle)
    before_count = count(target.counted) if target.counted else 0
    result = (paced(target.url, args.paced_seconds, args.rate) if load == "paced"
              else saturated(target.url, args.saturated_seconds))
    after_cpu = cpu_seconds(handle)  # before settling: only the run's own work
    settle(target.counted, 5.0 if load == "paced" else 30.0)
    cpu = (after_cpu[0] - before_cpu[0], after_cpu[1] - before_cpu[1])
    delivered = ((count(target.counted) - before_count) / max(result["requests"], 1)
                 if target.counted else None)
    cells.setdefault((target.name, load), Cell()).add(result, cpu, delivered)
    print(f"  {target.name:<20} {load:<9} {result['rps']:8.0f} req/s  p50 {result['p50']:7.2f} "
          f"ms  p99 {result['p99']:7.2f} ms"
          + (f"  delivered {delivered:.1%}" if delivered is not None else ""), flush=True)


def report(cells: dict) -> int:
    base = median(cells[("mitmdump", "saturated")].rps) if ("mitmdump", "saturated") in cells \
        else None
    header = (f"{'configuration':<20} {'load':<9} {'req/s':>7} {'×mitmdump':>9} {'p50 ms':>7} "
              f"{'p99 ms':>8} {'proxy µs/req':>12} {'workers µs/req':>14} {'mirrors':>8} "
              f"{'errors':>6}")
    print("\n" + header + "\n" + "-" * len(header))

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    order = ["direct", "mitmdump", "shadow fast", "shadow slow 500 ms", "shadow hanging",
             "shadow down"]
    for (name, load), cell in sorted(cells.items(),
                                     key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        rps = median(cell.rps)
        ratio = rps / base if load == "saturated" and base else None
        delivered = median(cell.delivered)
        print(f"{name:<20} {load:<9} {rps:7.0f} {fmt(ratio, '.2f'):>9} "
              f"{latency(cell, 'p50'):7.2f} {latency(cell, 'p99'):8.2f} "
              f"{fmt(median(cell.proxy_us), '.0f'):>12} {fmt(median(cell.worker_us), '.0f'):>14} "
              f"{fmt(delivered * 100 if delivered is not None else None, '.1f') + '%':>8} "
              f"{cell.errors:>6}")

    def get(name: str, load: str, what: str) -> float:
        cell = cells[(name, load)]
        return latency(cell, what) if what in ("p50", "p99") else median(getattr(cell, what))

    goals = [
        ("saturated: shadow (fast) ≥ 1.5 × mitmdump",
         lambda: get("shadow fast", "saturated", "rps") / base, 1.5, ">="),
        ("paced: mirrors delivered, candidate fast ≥ 99 %",
         lambda: get("shadow fast", "paced", "delivered") * 100, 99.0, ">="),
        ("paced: mirrors delivered, candidate slow ≥ 99 %",
         lambda: get("shadow slow 500 ms", "paced", "delivered") * 100, 99.0, ">="),
        ("paced: p99 slow / p99 fast ≤ 1.10",
         lambda: get("shadow slow 500 ms", "paced", "p99") / get("shadow fast", "paced", "p99"),
         1.10, "<="),
        ("paced: p99 hanging / p99 fast ≤ 1.10",
         lambda: get("shadow hanging", "paced", "p99") / get("shadow fast", "paced", "p99"),
         1.10, "<="),
        ("paced: p99 down / p99 fast ≤ 1.10",
         lambda: get("shadow down", "paced", "p99") / get("shadow fast", "paced", "p99"), 1.10,
         "<="),
    ]
    print()
    failed = 0
    for label, measured, limit, sense in goals:
        try:
            value = measured()
        except (KeyError, TypeError):  # that load was not run
            continue
        ok = value >= limit if sense == ">=" else value <= limit
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {value:.2f}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--loads", default="paced,saturated",
                        help="which loads to run, comma-separated (default paced,saturated)")
    parser.add_argument("--saturated-seconds", type=int, default=4)
    parser.add_argument("--rate", type=float, default=100.0, help="paced rate (req/s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="each configuration this many times, taking turns; medians reported")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DELAY"), help=argparse.SUPPRESS)
    parser.add_argument("--paced", nargs=3, metavar=("URL", "RATE", "S"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(int(args.serve[0]), float(args.serve[1])))
        return 0
    if args.paced:
        print(json.dumps(asyncio.run(_paced(args.paced[0], float(args.paced[1]),
                                            float(args.paced[2])))))
        return 0
    if not shutil.which("wrk") or not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        sys.exit("needs wrk, taskset and 2 cores (apt-get install -y wrk util-linux)")
    work = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    started: list[ManagedProcess] = []
    cells: dict = {}
    try:
        upstreams = {}
        for name, delay in (("primary", 0.0), ("fast", 0.0), ("slow", 0.5), ("hanging", -1.0)):
            process, upstreams[name] = upstream(delay)
            started.append(process)
        primary, down = upstreams["primary"], f"http://127.0.0.1:{free_port()}"
        targets = [Target("direct", primary)]
        for name, kind, candidate, counted in (
                ("mitmdump", "mitmdump", None, None),
                ("shadow fast", "shadow", upstreams["fast"], upstreams["fast"]),
                ("shadow slow 500 ms", "shadow", upstreams["slow"], upstreams["slow"]),
                ("shadow hanging", "shadow", upstreams["hanging"], upstreams["hanging"]),
                ("shadow down", "shadow", down, None)):
            process, url = start_proxy(kind, primary, candidate, work)
            started.append(process)
            targets.append(Target(name, url, process, counted))
        for target in targets:  # warm up: connections, caches, the workers' imports
            paced(target.url, 2.0, args.rate)
            settle(target.counted)
        # The configurations take turns, so a noisy neighbour on this shared machine hits all.
        for load in args.loads.split(","):
            for number in range(args.rounds):
                print(f"{load}, round {number + 1} of {args.rounds}", flush=True)
                turn = number % len(targets)
                for target in targets[turn:] + targets[:turn]:
                    measure(target, load, args, cells)
        for target in targets[1:]:
            rss = target.handle.memory_info().rss / 2**20
            print(f"  {target.name:<20} proxy RSS at the end {rss:.0f} MiB")
    finally:
        for process in reversed(started):
            process.stop(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    return report(cells)


if __name__ == "__main__":
    sys.exit(main())
