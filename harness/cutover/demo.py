"""The demo's cutover act (`parity demo --cutover`): a Docker primary and a native candidate
behind `parity shadow --admin`; data is advanced to 50 %, a drift is switched on in the candidate
while it serves, and the automatic rollback is shown with its reason and the timeline."""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from harness.cutover.status import status_lines
from harness.processes import (
    ManagedProcess,
    ReferenceApp,
    free_port,
    reference_argv,
    start_reference_app,
)

OHLCV = "/api/v1/data/ohlcv/binance/BTCUSDT/1h"
IDENTITIES = 100
ROLLBACK_WAIT_S = 30.0


def _admin(base: str, token: str, action: str, **body: Any) -> dict[str, Any]:
    answer = httpx.request("GET" if action == "status" else "POST", f"{base}/cutover/{action}",
                           json=body or None, headers={"Authorization": f"Bearer {token}"},
                           timeout=30)
    answer.raise_for_status()
    return answer.json()


def _round(client: httpx.Client, proxy: str) -> tuple[dict[int, str], int]:
    """One GET per identity: who served it, and how many clients saw an error."""
    served, errors = {}, 0
    for identity in range(IDENTITIES):
        answer = client.get(proxy + OHLCV, params={"limit": 3},
                            headers={"X-Forwarded-For": f"10.20.0.{identity}"})
        errors += answer.status_code != 200
        served[identity] = answer.headers.get("x-parity-served-by", "?")
    return served, errors


def run_cutover_act(console: Console, seed: int = 7) -> int:
    """Run the act; the number of client errors seen (0 expected)."""
    work = Path(tempfile.mkdtemp(prefix="parity-demo-cutover-"))
    admin_token, control = secrets.token_hex(16), secrets.token_hex(16)
    errors = 0
    try:
        with ExitStack() as stack:
            console.print("[bold]parity demo --cutover[/]: Docker primary, native candidate "
                          "(no drift yet), the shadow proxy with its admin endpoint")
            primary = start_reference_app("docker", seed=seed, data_dir=work / "primary",
                                          log_path=work / "primary.log")
            stack.callback(primary.stop)
            port = free_port()
            candidate = ReferenceApp(
                [*reference_argv("native", port=port, seed=seed, data_dir=work / "candidate"),
                 "--control-token", control], f"http://127.0.0.1:{port}",
                log_path=work / "candidate.log").start()
            stack.callback(candidate.stop)
            port, admin_port = free_port(), free_port()
            proxy_url, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
            proxy = ManagedProcess(
                [sys.executable, "-m", "harness.cli", "shadow", "--primary", primary.base_url,
                 "--candidate", candidate.base_url, "--listen", f"127.0.0.1:{port}",
                 "--recordings", str(work / "recordings"), "--admin",
                 f"127.0.0.1:{admin_port}", "--mark-served", "--drain", "2"],
                env={"PARITY_ADMIN_TOKEN": admin_token},
                health_url=f"{proxy_url}/health", log_path=work / "shadow.log").start()
            stack.callback(proxy.stop)
            with httpx.Client(timeout=30) as client:
                line = _admin(admin, admin_token, "advance", group="data", percent=50)["message"]
                console.print(f"parity cutover advance data 50 → {line}")
                served, seen = _round(client, proxy_url)
                errors += seen
                moved = sum(side == "candidate" for side in served.values())
                console.print(f"{IDENTITIES} users ask for candles: {moved} answered by native, "
                              f"{IDENTITIES - moved} by Docker; each user stays on its side")
                httpx.put(candidate.base_url + "/_reference/drifts",
                          json={"drifts": ["tz-offset"]},
                          headers={"Authorization": f"Bearer {control}"}).raise_for_status()
                switched, switched_at = time.monotonic(), time.time()
                console.print("[yellow]the candidate's host clock drifts[/] (tz-offset switched "
                              "on while it serves): candles come back an hour late")
                while time.monotonic() - switched < ROLLBACK_WAIT_S:
                    served, seen = _round(client, proxy_url)
                    errors += seen
                    status = _admin(admin, admin_token, "status")
                    if status["groups"]["data"]["share"] == 0:
                        break
            status = _admin(admin, admin_token, "status")
            rollback = status["groups"]["data"]["last_rollback"]
            if rollback is None:
                console.print("[red]no rollback within "
                              f"{ROLLBACK_WAIT_S:g} s[/]; the proxy's log is {work}/shadow.log")
            else:
                console.print(f"[bold red]data rolled back to 0 %[/] "
                              f"{max(0.0, rollback['at'] - switched_at):.2f} s after the drift "
                              f"was switched on, {errors} client errors: {rollback['reason']}")
            console.print("\n".join(status_lines(status)[:2]))
            console.print("[bold]timeline[/]:")
            for event in status["history"]:
                at = datetime.fromtimestamp(event["at"], UTC).strftime("%H:%M:%S.%f")[:-3]
                console.print(f"  {at}  {event['group']:<8} {event['event']:<8} "
                              f"{event['share']:g} %  {event.get('reason') or ''}")
    except BaseException:
        console.print(f"[red]the cutover act failed; the processes' logs are kept in {work}[/]")
        raise
    shutil.rmtree(work, ignore_errors=True)
    return errors
