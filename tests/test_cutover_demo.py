"""`parity demo --cutover`: the act runs end to end and shows the automatic rollback."""

from __future__ import annotations

import subprocess
import sys


def test_the_cutover_act_shows_the_rollback_and_its_reason() -> None:
    done = subprocess.run([sys.executable, "-m", "harness.cli", "demo", "--cutover"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert "data: 50 % of identities served by the candidate" in out
    assert "data rolled back to 0 %" in out and ", 0 client errors:" in out
    assert "candles shifted by +1h" in out
    assert "data advance 50 %" in out and "data rollback 0 %" in out  # the timeline
