"""`parity compare`: exit codes, JSON output, and the real console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.cli import main

BIN = Path(sys.executable).parent / "parity"


def files(tmp_path, primary, candidate):
    p, c = tmp_path / "p.json", tmp_path / "c.json"
    p.write_text(json.dumps(primary) if not isinstance(primary, str) else primary)
    c.write_text(json.dumps(candidate) if not isinstance(candidate, str) else candidate)
    return str(p), str(c)


def test_match_mismatch_and_json_output(tmp_path, capsys):
    p, c = files(tmp_path, {"a": 1.0, "id": 1}, {"a": 1.0000001, "id": 2})
    assert main(["compare", p, c, "--rtol", "1e-3", "--ignore", "id"]) == 0
    capsys.readouterr()
    assert main(["compare", p, c, "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "mismatch"
    assert {d["path"] for d in out["differences"]} == {"a", "id"}
    assert set(out["differences"][0]) == {"path", "kind", "primary", "candidate", "severity",
                                          "message"}


def test_route_picks_the_comparator(tmp_path, capsys):
    p, c = files(tmp_path, [{"timestamp": "2024-01-01T00:00:00Z", "open": 1, "high": 1, "low": 1,
                             "close": 1, "volume": 1}],
                 [{"timestamp": "2024-01-01T00:00:00Z", "open": 1, "high": 1, "low": 1,
                   "close": 1, "volume": 1}])
    assert main(["compare", p, c, "--route", "GET /api/v1/data/ohlcv/binance/BTC-USDT/1h",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["comparator"] == "ohlcv"


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    p, c = files(tmp_path, {}, {})
    assert main(["compare", p, str(tmp_path / "missing.json")]) == 2
    assert main(["compare", p, c, "--comparator", "nope"]) == 2
    assert main(["compare", p, c, "--route", "nonsense"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("parity compare: error:") for line in errors)


def test_console_script(tmp_path):
    p, c = files(tmp_path, "not json at all", "not json either")
    done = subprocess.run([str(BIN), "compare", p, c], capture_output=True, text=True)
    assert done.returncode == 1
    assert "text bodies differ" in done.stdout
    done = subprocess.run([str(BIN), "compare", p, c, "--comparator", "backtest", "--json"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and json.loads(done.stdout)["verdict"] == "mismatch"
