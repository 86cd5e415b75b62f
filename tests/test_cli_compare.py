"""`parity compare`: exit codes, options, JSON and readable output, and the real console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

BIN = Path(sys.executable).parent / "parity"


def files(tmp_path, primary, candidate):
    p, c = tmp_path / "primary.json", tmp_path / "candidate.json"
    for path, body in ((p, primary), (c, candidate)):
        path.write_bytes(body if isinstance(body, bytes) else
                         body.encode() if isinstance(body, str) else json.dumps(body).encode())
    return str(p), str(c)


def run_json(capsys, *argv) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["compare", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_match_mismatch_tolerance_and_ignore(tmp_path, capsys):
    p, c = files(tmp_path, {"a": 1.0, "id": 1, "n": [1, 2]}, {"a": 1.0000001, "id": 2, "n": [1, 2]})
    code, out = run_json(capsys, p, c)
    assert code == 1 and out["verdict"] == "mismatch"
    assert {d["path"] for d in out["differences"]} == {"a", "id"}
    assert set(out["differences"][0]) == {"path", "kind", "primary", "candidate", "severity",
                                          "message"}
    assert main(["compare", p, c, "--rtol", "1e-3", "--ignore", "id"]) == 0
    assert main(["compare", p, c, "--atol", "1e-3", "--ignore", "id"]) == 0
    assert main(["compare", p, c, "--atol", "1e-9", "--ignore", "id"]) == 1
    code, out = run_json(capsys, p, p)
    assert (code, out["verdict"], out["differences"]) == (0, "match", [])


def test_status_codes(tmp_path, capsys):
    p, c = files(tmp_path, {"a": 1}, {"a": 1})
    code, out = run_json(capsys, p, c, "--status-primary", "200", "--status-candidate", "503")
    assert code == 1
    (diff,) = out["differences"]
    assert (diff["path"], diff["severity"], diff["primary"], diff["candidate"]) == (
        "@status", "critical", 200, 503)


def test_route_picks_comparator_and_options(tmp_path, capsys):
    candle = {"timestamp": "2024-01-01T00:00:00Z", "open": 1, "high": 1, "low": 1, "close": 1,
              "volume": 1}
    p, c = files(tmp_path, [candle], [{**candle, "timestamp": "2024-01-01T01:00:00Z"}])
    code, out = run_json(capsys, p, c, "--route", "GET /api/v1/data/ohlcv/binance/BTC-USDT/1h")
    assert out["comparator"] == "ohlcv" and code == 1
    # The status route ignores `status`: its option comes with --route.
    p, c = files(tmp_path, {"status": "running", "x": 1}, {"status": "completed", "x": 1})
    assert main(["compare", p, c, "--route", "GET /api/backtest/status/7"]) == 0
    assert main(["compare", p, c]) == 1


def test_config_file_and_comparator_option(tmp_path, capsys):
    config = tmp_path / "parity.toml"
    config.write_text('[[routes]]\nmethod = "GET"\npath = "/custom/{id}"\ngroup = "other"\n'
                      '[routes.options]\nignore = ["volatile"]\n')
    p, c = files(tmp_path, {"volatile": 1}, {"volatile": 2})
    assert main(["compare", p, c, "--config", str(config), "--route", "GET /custom/3"]) == 0
    code, out = run_json(capsys, p, c, "--comparator", "backtest")
    assert (code, out["comparator"]) == (1, "backtest")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["{p}", "{missing}"], "cannot read"),
        (["{p}", "{c}", "--comparator", "nope"], "unknown comparator 'nope' (known: auth,"),
        (["{p}", "{c}", "--route", "nonsense"], '--route'),
        (["{p}", "{c}", "--rtol", "-1"], "--rtol must be a non-negative number"),
        (["{p}", "{c}", "--config", "{bad}"], "not valid TOML"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, argv, needle):
    p, c = files(tmp_path, {}, {})
    bad = tmp_path / "bad.toml"
    bad.write_text("[noise\n")
    names = {"p": p, "c": c, "missing": str(tmp_path / "missing.json"), "bad": str(bad)}
    capsys.readouterr()
    assert main(["compare", *(a.format(**names) for a in argv)]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("parity compare: error:") and needle in line
    assert "Traceback" not in captured.err and captured.out == ""


def test_readable_output_names_paths_and_values(tmp_path, capsys):
    p, c = files(tmp_path, {"results": {"metrics": {"sharpe_ratio": 1.2034}}},
                 {"results": {"metrics": {"sharpe_ratio": 1.1987}}})
    capsys.readouterr()
    assert main(["compare", p, c, "--rtol", "1e-9"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("mismatch")
    assert "results.metrics.sharpe_ratio 1.2034 vs 1.1987 (rel 3.9e-03 > 1e-09)" in out
    assert "\x1b[" not in out  # no colour when not a terminal


def test_console_script(tmp_path):
    p, c = files(tmp_path, "not json at all\n", "not json either\n")
    done = subprocess.run([str(BIN), "compare", p, c], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert "text bodies differ at line 1" in done.stdout
    done = subprocess.run([str(BIN), "compare", p, str(tmp_path / "nope.json"), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "cannot read" in done.stderr


# --- three ways: --secondary ------------------------------------------------------------------


def optimisation(seed: int) -> dict:
    """The real backtest service's optimize answer: unseeded random metrics per run."""
    import random

    rng = random.Random(seed)
    return {"optimization_id": f"0b6f1c9e-0000-4000-8000-{seed:012d}",
            "strategy_name": "sma_crossover", "symbol": "BTCUSDT", "timeframe": "1h",
            "results": [{"parameters": {"fast": fast},
                         "metrics": {"profit": rng.uniform(500, 5000),
                                     "sharpe_ratio": rng.uniform(0.5, 2.5),
                                     "win_rate": rng.uniform(0.4, 0.7),
                                     "total_trades": rng.randint(50, 200)}}
                        for fast in (5, 10)]}


def three(tmp_path, primary, candidate, secondary) -> list[str]:
    p, c = files(tmp_path, primary, candidate)
    s = tmp_path / "secondary.json"
    s.write_text(json.dumps(secondary))
    return [p, c, "--secondary", str(s)]


def test_unseeded_random_metrics_are_untestable_not_a_mismatch(tmp_path, capsys):
    argv = three(tmp_path, optimisation(1), optimisation(2), optimisation(3))
    code, out = run_json(capsys, *argv, "--route", "POST /api/backtest/optimize")
    assert (code, out["comparator"], out["verdict"]) == (1, "backtest", "untestable")
    assert "the two Docker copies disagree at" in out["reason"]
    assert "results[*].metrics.sharpe_ratio" in out["reason"]
    assert out["differences"] and not any(d["noise"] for d in out["differences"])
    copies = {d["path"] for d in out["secondary"]}
    assert {d["path"] for d in out["differences"]} <= copies
    assert set(out["secondary"][0]) == {"path", "kind", "primary", "secondary", "severity",
                                        "message"}
    # Two answers alone cannot tell: the same pair without the secondary is a mismatch.
    code, out = run_json(capsys, *argv[:2], "--route", "POST /api/backtest/optimize")
    assert (code, out["verdict"]) == (1, "mismatch")


def test_differences_only_where_the_copies_mint_values_are_noise_only(tmp_path, capsys):
    def answer(minted: str, value: float = 5.0) -> dict:
        return {"id": minted, "created_at": "2024-05-01T00:00:00Z", "value": value}

    argv = three(tmp_path, answer("3f0e8a1c-1b2d-4c5e-8f90-1a2b3c4d5e6f"),
                 answer("9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"),
                 answer("0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9"))
    code, out = run_json(capsys, *argv)
    assert (code, out["verdict"]) == (0, "noise-only")
    (diff,) = out["differences"]
    assert (diff["path"], diff["noise"]) == ("id", True)
    assert [d["path"] for d in out["secondary"]] == ["id"]
    # A real difference next to the noise is still a mismatch: noise never hides it.
    argv = three(tmp_path, answer("3f0e8a1c-1b2d-4c5e-8f90-1a2b3c4d5e6f"),
                 answer("9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d", 6.0),
                 answer("0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9"))
    code, out = run_json(capsys, *argv)
    assert (code, out["verdict"]) == (1, "mismatch")
    assert {(d["path"], d["noise"]) for d in out["differences"]} == {("id", True),
                                                                      ("value", False)}
    capsys.readouterr()
    assert main(["compare", *argv]) == 1
    readable = capsys.readouterr().out
    assert readable.startswith("mismatch") and "noise" in readable
    assert "the two Docker copies (primary, secondary) disagree at 1 place: id" in readable


def test_a_missing_secondary_is_a_one_line_error(tmp_path, capsys):
    p, c = files(tmp_path, {}, {})
    capsys.readouterr()
    assert main(["compare", p, c, "--secondary", str(tmp_path / "nope.json")]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "cannot read" in captured.err
