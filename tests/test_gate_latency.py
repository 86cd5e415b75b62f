"""The gate judges latency: a paired test (Wilcoxon signed-rank on candidate − primary of the same
exchanges) with a minimum count and margins at p50 and p99. A candidate with the reference app's
`slow` drift (the data service answers 200 ms later) fails the data group's gate with the test's
numbers; a candidate with the same latency passes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import Shadow

from harness.config import load_config
from harness.judge.gate import (
    LATENCY_SAMPLE,
    P99_MIN_PAIRS,
    LatencyPairs,
    Tally,
    evaluate,
    gate_groups,
    latency_test,
    wilcoxon_greater,
)
from reference_cryptobot.drifts import DRIFTS, SLOW_S

BIN = Path(sys.executable).parent
RULE = load_config().gates.default  # the shipped [gates.default]


def pairs(primary: list[float], candidate: list[float]) -> LatencyPairs:
    sample = LatencyPairs()
    for p, c in zip(primary, candidate, strict=True):
        sample.add(p, c)
    return sample


def spread(n: int, base: float = 10.0) -> list[float]:
    """`n` latencies around `base` ms, varied but deterministic."""
    return [base + (i * 7 % 13) * 0.5 for i in range(n)]


def test_a_candidate_slower_beyond_its_margin_fails_with_the_numbers():
    primary = spread(40)
    result = latency_test(pairs(primary, [p + 60.0 for p in primary]), RULE)
    assert result.slower and result.pairs == 40 and result.p_value < 1e-6
    assert result.candidate_p50 - result.primary_p50 == pytest.approx(60.0)
    line = result.line()
    assert line.startswith("latency: candidate slower than the primary beyond its margin: p50 ")
    assert f"vs {result.primary_p50:.1f} ms (margin 25.0 ms)" in line
    assert "Wilcoxon signed-rank n=40, p=" in line


def test_same_latency_or_a_difference_within_the_margin_passes():
    primary = spread(40)
    same = latency_test(pairs(primary, list(reversed(primary))), RULE)
    assert same.status == "faster or same" and same.p_value > 0.01
    # Significantly slower (every exchange 10 ms), but within the 25 ms floor of the margin.
    within = latency_test(pairs(primary, [p + 10.0 for p in primary]), RULE)
    assert within.p_value < 1e-6 and within.status == "faster or same"
    assert latency_test(pairs(primary, primary), RULE).p_value == 1.0


def test_too_few_pairs_are_shown_not_judged_and_p99_needs_its_own_minimum():
    primary = spread(19)
    few = latency_test(pairs(primary, [p + 500.0 for p in primary]), RULE)
    assert few.status == "too few pairs" and not few.slower
    assert few.line() == ("latency: not judged, 19 exchange(s) timed on both sides (the test "
                          "needs 20)")
    # Slower only in the tail: judged at p99 once there are P99_MIN_PAIRS pairs.
    n = P99_MIN_PAIRS
    primary = spread(n)
    tail = [p + (400.0 if i >= n - 3 else 1.0) for i, p in enumerate(primary)]
    assert latency_test(pairs(primary[:-1], tail[:-1]), RULE).status == "faster or same"
    judged = latency_test(pairs(primary, tail), RULE)
    assert judged.p99_judged and judged.slower, judged.line()


def test_the_latency_finding_fails_the_group_and_skipped_or_unjudged_exchanges_are_not_paired():
    def record(verdict: str, primary_ms: float | None, candidate_ms: float | None) -> dict:
        return {"request": {"method": "GET", "path": "/x"}, "group": "data", "route": "GET /x",
                "verdict": verdict, "differences": [],
                "primary": {"latency_ms": primary_ms},
                "candidate": None if candidate_ms is None else {"latency_ms": candidate_ms}}

    records = [record("match", p, p + 100.0) for p in spread(30)]
    records += [record("skipped", 1.0, None), record("match", 5.0, None),
                record("match", float("nan"), 3.0)]
    gate = gate_groups(records, load_config().gates)["data"]
    assert gate.tally.latency.count == 30
    assert gate.result.status == "not ready"
    assert gate.result.reasons[0].startswith("latency: candidate slower")
    assert gate.result.latency is not None and gate.result.latency.to_dict()["pairs"] == 30
    # The same exchanges, the candidate as fast: ready, the test still shown.
    same = [record("match", p, p) for p in spread(30)]
    ready = gate_groups(same, load_config().gates)["data"].result
    assert ready.passed and ready.latency.status == "faster or same"


def test_merged_samples_stay_bounded_and_keep_both_sides():
    left, right = LatencyPairs(), LatencyPairs()
    for i in range(LATENCY_SAMPLE):
        left.add(1.0, 1.0 + i % 3)
        right.add(2.0, 500.0)
    left.merge(right)
    assert left.count == 2 * LATENCY_SAMPLE and len(left) == LATENCY_SAMPLE
    slow_share = sum(1 for c in left.candidate if c == 500.0) / LATENCY_SAMPLE
    assert 0.45 < slow_share < 0.55
    tally = Tally()
    tally.merge(Tally(latency=left))
    assert tally.latency.count == 2 * LATENCY_SAMPLE
    assert evaluate(tally, RULE).status == "no data"  # pairs alone are not compared exchanges


@pytest.mark.parametrize("seed", range(4))
def test_the_signed_rank_test_gives_scipys_p_values(seed):
    import numpy as np
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(seed)
    for n in (1, 5, 19, 20, 50, 51, 200):
        for differences in (rng.normal(rng.uniform(-1, 1), 1, n),
                            np.round(rng.normal(0.3, 1, n), 1)):  # ties and zeros
            kept = differences[differences != 0]
            if kept.size == 0:
                assert wilcoxon_greater(differences) == 1.0
                continue
            exact = kept.size <= 50 and np.unique(np.abs(kept)).size == kept.size
            expected = wilcoxon(differences, alternative="greater", zero_method="wilcox",
                                correction=False, method="exact" if exact else "approx").pvalue
            assert wilcoxon_greater(differences) == pytest.approx(expected, abs=1e-12)


# --- the reference app's `slow` drift, end to end -------------------------------------------


def test_the_slow_drift_is_a_latency_drift_of_the_data_service():
    slow = DRIFTS["slow"]
    assert slow.service == "data" and slow.regression and not slow.content
    assert 4 * RULE.latency_margin_ms < SLOW_S * 1000  # far beyond the default margin


@pytest.fixture(scope="module")
def apps(reference_factory):
    started = {"primary": reference_factory("docker", wait=False),
               "same": reference_factory("docker", wait=False),
               "slow": reference_factory("native", drifts=("slow",), wait=False)}
    for app in started.values():
        app.wait_healthy()
    return started


@pytest.fixture(scope="module")
def candle_recordings(apps, tmp_path_factory) -> Path:
    """40 OHLCV reads recorded by the shadow proxy (candidate: a Docker copy)."""
    import httpx

    shadow = Shadow(tmp_path_factory.mktemp("latency"), apps["primary"].base_url,
                    apps["same"].base_url)
    with httpx.Client(base_url=shadow.url, timeout=30) as client:
        for i in range(40):
            symbol = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT")[i % 4]
            answer = client.get(f"/api/v1/data/ohlcv/binance/{symbol}/1h",
                                params={"limit": 5 + i})
            assert answer.status_code == 200
    records = shadow.stop()
    assert sum(1 for r in records if r.get("group") == "data") == 40
    return shadow.recordings


def replay(recordings: Path, primary: str, candidate: str, out: Path):
    done = subprocess.run(
        [str(BIN / "parity"), "replay", str(recordings), "--primary", primary, "--candidate",
         candidate, "--concurrency", "4", "--no-progress", "--json", str(out),
         "--report", str(out.with_suffix(".html"))],
        capture_output=True, text=True, timeout=300, env=dict(os.environ),
        stdin=subprocess.DEVNULL)
    return done, json.loads(out.read_text())["groups"]["data"] if out.exists() else {}


def test_a_slower_candidate_fails_its_group_with_the_paired_tests_numbers(
        candle_recordings, apps, tmp_path):
    done, data = replay(candle_recordings, apps["primary"].base_url, apps["slow"].base_url,
                        tmp_path / "slow.json")
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("data "))
    assert re.match(r"data\s+NOT READY\s+compared\s+40\s+failing\s+0\s+latency: candidate "
                    r"slower than the primary beyond its margin: p50 [\d.]+ ms vs [\d.]+ ms "
                    r"\(margin [\d.]+ ms\), p99 .*Wilcoxon signed-rank n=40, p=", line), line
    gate = data["latency_gate"]
    assert data["status"] == "not ready" and gate["status"] == "slower"
    assert gate["pairs"] == 40 and gate["p_value"] < 0.01 and "Wilcoxon" in gate["test"]
    assert gate["candidate"]["p50"] - gate["primary"]["p50"] > gate["margin_ms"]["p50"]
    assert data["failing"] == 0  # the same answers: only the latency differs
    html = (tmp_path / "slow.html").read_text()
    row = html[html.index('id="latency-gate"'):]
    row = row[row.index('<tr data-group="data"'):row.index("</tr>", row.index('data-group="data"'))]
    assert 'data-latency="slower"' in row and 'data-k="pairs" data-value="40"' in row, row
    assert f'data-k="p-value">{gate["p_value"]:.2g}<' in row, row


def test_a_candidate_with_the_same_latency_passes(candle_recordings, apps, tmp_path):
    done, data = replay(candle_recordings, apps["primary"].base_url, apps["same"].base_url,
                        tmp_path / "same.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^data\s+READY\s+compared\s+40\s", done.stdout, re.M), done.stdout
    assert data["status"] == "ready" and data["latency_gate"]["status"] == "faster or same"
    assert data["latency_gate"]["pairs"] == 40
