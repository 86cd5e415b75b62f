"""What the cutover costs and how fast it rolls back, measured side by side in one run.

    python bench/bench_cutover.py [--seconds 5] [--rounds 3] [--trials 20]

1. Routing cost on the hot path: saturated throughput (wrk, 16 connections, every request from
   another X-Forwarded-For identity) through `parity shadow` in plain shadow mode and through
   `parity shadow --admin` with the route's group at 50 % (half the identities answered by the
   candidate, the other half by the primary), both in front of the same two tiny upstreams
   (bench_shadow.py's), taking turns round after round; medians. Goal: >= 0.95x.
2. Rollback latency: `parity shadow --admin` in front of a Docker reference app and a native one
   whose drifts switch at runtime; data at 50 %, 100 requests/s paced over 200 identities; the
   `tz-offset` drift is switched on, and the latency is the time from the switch being asked
   for (no breaching exchange can be earlier) to the first request of a moved identity the
   primary served (the routing flipped: at most one request interval, 10 ms, after the flip);
   then the drift is switched off, the group resumed, and the next trial starts. Goal: p99 <=
   1 s (nearest rank over the trials).

The proxies run pinned to core 0, everything else on core 1. Needs Linux, 2 cores, taskset and
wrk. Loopback only; about 4 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_shadow import OTHER_CORE, PATH, PROXY_CORE, WRK_CONNECTIONS, pinned, upstream

from harness.processes import ManagedProcess, ReferenceApp, free_port, reference_argv

TOKEN = "bench-admin-token"
CONTROL = "bench-control-token"
OHLCV = "/api/v1/data/ohlcv/binance/BTCUSDT/1h"
# Every request from another client: the cutover's routing decision is made per identity.
WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, {["X-Forwarded-For"] = "10." .. (counter % 250) .. "." ..
                               (math.floor(counter / 250) % 250) .. ".1"})
end
"""


def proxy(primary: str, candidate: str, work: Path, *extra: str,
          health: str = "/__count") -> tuple[ManagedProcess, str]:
    port = free_port()
    argv = [sys.executable, "-m", "harness.cli", "shadow", "--primary", primary, "--candidate",
            candidate, "--listen", f"127.0.0.1:{port}", "--recordings", str(work / f"rec-{port}"),
            "--timeout", "2", "--drain", "2", "--queue-size", "2000", *extra]
    process = ManagedProcess(pinned(PROXY_CORE, argv), log_path=work / f"proxy-{port}.log",
                             env={"PARITY_ADMIN_TOKEN": TOKEN},
                             health_url=f"http://127.0.0.1:{port}{health}").start()
    return process, f"http://127.0.0.1:{port}"


def admin(url: str, action: str, **body: object) -> dict:
    answer = httpx.request("GET" if action == "status" else "POST", f"{url}/cutover/{action}",
                           json=body or None, headers={"Authorization": f"Bearer {TOKEN}"},
                           timeout=30)
    answer.raise_for_status()
    return answer.json()


def wrk(url: str, seconds: int, script: Path, process: ManagedProcess) -> tuple[float, float]:
    """(requests/s, the proxy's CPU µs per request) of one saturated run; SystemExit when wrk
    saw errors."""
    proxy_process = psutil.Process(process.pid)
    before = sum(proxy_process.cpu_times()[:2])
    out = subprocess.run(pinned(OTHER_CORE, ["wrk", "-t1", f"-c{WRK_CONNECTIONS}",
                                             f"-d{seconds}s", "-s", str(script), url + PATH]),
                         capture_output=True, text=True, check=True).stdout
    cpu = sum(proxy_process.cpu_times()[:2]) - before
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"wrk saw errors:\n{out}")
    requests = int(out.split(" requests in")[0].split()[-1])
    return float(out.split("Requests/sec:")[1].split()[0]), cpu / max(requests, 1) * 1e6


def routing_cost(args: argparse.Namespace, work: Path) -> float:
    script = work / "identities.lua"
    script.write_text(WRK_SCRIPT)
    primary_process, primary = upstream()
    candidate_process, candidate = upstream()
    admin_port = free_port()
    plain, plain_url = proxy(primary, candidate, work)
    moved, moved_url = proxy(primary, candidate, work, "--admin", f"127.0.0.1:{admin_port}")
    try:
        admin(f"http://127.0.0.1:{admin_port}", "advance", group="other", percent=50)
        rps: dict[str, list[float]] = {"shadow mode": [], "cutover at 50 %": []}
        cpu: dict[str, list[float]] = {"shadow mode": [], "cutover at 50 %": []}
        pair = [("shadow mode", plain_url, plain), ("cutover at 50 %", moved_url, moved)]
        for round_ in range(args.rounds):
            for name, url, process in pair if round_ % 2 == 0 else pair[::-1]:  # ABBA
                rate, micros = wrk(url, args.seconds, script, process)
                rps[name].append(rate)
                cpu[name].append(micros)
                time.sleep(1.0)  # the workers catch up between runs
        for name, values in rps.items():
            print(f"  {name:<16} {statistics.median(values):8.0f} req/s, proxy CPU "
                  f"{statistics.median(cpu[name]):5.0f} µs/request  (rounds: "
                  + ", ".join(f"{v:.0f}" for v in values) + ")")
        # Ratios of the runs taken side by side, then their median: a neighbour's load that
        # comes and goes hits both runs of a round alike.
        ratio = statistics.median(c / s for c, s in zip(rps["cutover at 50 %"],
                                                        rps["shadow mode"], strict=True))
        capacity = statistics.median(s / c for c, s in zip(cpu["cutover at 50 %"],
                                                           cpu["shadow mode"], strict=True))
        print(f"  throughput ratio {ratio:.3f}x; CPU-per-request ratio {capacity:.3f}x (medians "
              "of the rounds' ratios; CPU per request is the capacity of one proxy core)")
        served = admin(f"http://127.0.0.1:{admin_port}", "status")["groups"]["other"]
        print(f"  identities seen {served['seen_identities']}, moved "
              f"{served['moved_identities']}")
        if served["last_rollback"]:
            sys.exit(f"the group rolled back during the runs: {served['last_rollback']}")
        return ratio
    finally:
        for process in (plain, moved, primary_process, candidate_process):
            process.stop()


async def drifts(candidate: str, names: list[str]) -> None:
    """Switch the candidate's drifts, on a connection of its own (a kept-alive one may have
    been closed by the server since the last switch)."""
    async with httpx.AsyncClient() as control:
        answer = await control.put(candidate + "/_reference/drifts", json={"drifts": names},
                                   headers={"Authorization": f"Bearer {CONTROL}"})
        answer.raise_for_status()


async def paced_trial(client: httpx.AsyncClient, proxy_url: str, admin_url: str,
                      candidate: str, moved: set[int], rate: float) -> float:
    """Switch the drift on under `rate` req/s; seconds from the switch to the first moved
    identity's request the primary served."""
    switched_at: list[float] = []
    flipped: list[float] = []
    switched = asyncio.Event()  # set when the switch is asked for: a conservative start

    async def one(identity: int) -> None:
        sent = time.monotonic()
        after = switched.is_set()
        answer = await client.get(proxy_url + OHLCV, params={"limit": 3},
                                  headers={"X-Forwarded-For": f"10.1.0.{identity}"})
        if answer.status_code != 200:
            raise SystemExit(f"a client saw HTTP {answer.status_code}")
        if after and identity in moved and answer.headers["x-parity-served-by"] == "primary":
            flipped.append(sent)

    async def switch() -> None:
        await asyncio.sleep(1.0)
        status = await client.get(admin_url + "/cutover/status",
                                  headers={"Authorization": f"Bearer {TOKEN}"})
        if status.json()["groups"]["data"]["share"] != 50:
            raise SystemExit("data rolled back before the drift (a late mirror of the last "
                             "trial?): not a measurement")
        switched_at.append(time.monotonic())
        switched.set()
        await drifts(candidate, ["tz-offset"])

    tasks = [asyncio.create_task(switch())]
    start, n = time.monotonic(), 0
    while not flipped and time.monotonic() - start < 30:
        tasks.append(asyncio.create_task(one(n % 200)))
        n += 1
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
    await asyncio.gather(*tasks)
    if not flipped:
        raise SystemExit("no rollback within 30 s")
    return min(flipped) - switched_at[0]


def rollback_latency(args: argparse.Namespace, work: Path) -> list[float]:
    apps = []
    for flavor, extra in (("docker", []), ("native", ["--control-token", CONTROL])):
        port = free_port()
        argv = pinned(OTHER_CORE, reference_argv(flavor, port=port, data_dir=work / flavor))
        apps.append(ReferenceApp([*argv, *extra], f"http://127.0.0.1:{port}",
                                 log_path=work / f"{flavor}.log").start())
    primary, candidate = apps
    admin_port = free_port()
    admin_url = f"http://127.0.0.1:{admin_port}"
    process, proxy_url = proxy(primary.base_url, candidate.base_url, work, "--admin",
                               f"127.0.0.1:{admin_port}", "--mark-served", health="/health")
    latencies = []
    try:
        admin(admin_url, "advance", group="data", percent=50)
        with httpx.Client() as client:
            moved = {i for i in range(200) if client.get(
                proxy_url + OHLCV, params={"limit": 3},
                headers={"X-Forwarded-For": f"10.1.0.{i}"}).headers["x-parity-served-by"]
                == "candidate"}

        async def trials() -> None:
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as client:
                for trial in range(args.trials):
                    latencies.append(await paced_trial(client, proxy_url, admin_url,
                                                       candidate.base_url, moved, args.rate))
                    last = admin(admin_url, "status")["groups"]["data"]["last_rollback"]
                    print(f"  trial {trial + 1}: {latencies[-1] * 1000:.0f} ms "
                          f"({last['reason'][:70]}...)")
                    await drifts(candidate.base_url, [])
                    await asyncio.sleep(3.0)  # mirrors of the drifted answers are judged
                    admin(admin_url, "resume", group="data")

        asyncio.run(trials())
    finally:
        process.stop()
        for app in apps:
            app.stop()
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=4, help="wrk run length (default 4)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of each (default 8)")
    parser.add_argument("--trials", type=int, default=20, help="rollback trials (default 20)")
    parser.add_argument("--rate", type=float, default=100.0, help="paced req/s (default 100)")
    parser.add_argument("--only", choices=("routing", "rollback"), help="one measure alone")
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        sys.exit("needs wrk, taskset and 2 cores (apt-get install -y wrk util-linux)")
    work = Path(tempfile.mkdtemp(prefix="bench-cutover-"))
    os.environ.setdefault("PARITY_REDACTION_KEY_FILE", str(work / "redaction.key"))
    ratio, p99 = 1.0, 0.0
    try:
        if args.only != "rollback":
            print("routing cost (saturated, wrk -c16, an identity per request):")
            ratio = routing_cost(args, work)
            print(f"\nrouting at 50 % vs shadow mode: {ratio:.3f}x   goal >= 0.95x   "
                  f"{'PASS' if ratio >= 0.95 else 'FAIL'}")
        if args.only != "routing":
            print(f"rollback latency (data at 50 %, {args.rate:g} req/s, tz-offset switched "
                  "on):")
            latencies = sorted(rollback_latency(args, work))
            p99 = latencies[max(0, math.ceil(0.99 * len(latencies)) - 1)]
            print(f"\nrollback latency: p50 {statistics.median(latencies) * 1000:.0f} ms, p99 "
                  f"{p99 * 1000:.0f} ms over {len(latencies)} trials   goal p99 <= 1000 ms   "
                  f"{'PASS' if p99 <= 1.0 else 'FAIL'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ratio >= 0.95 and p99 <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
