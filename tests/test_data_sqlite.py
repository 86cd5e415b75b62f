"""`parity data` on sqlite: the reference Cryptobot's data dirs synced with and without the sync
drifts; exactly the damaged rows are found, float noise is not, rows changed during the run are
"in flight", both directions, and bad input gets a one-line error or an incomparable finding."""

from __future__ import annotations

import json
import math
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from datastate_support import (
    float32_damaged,
    make_docker_dir,
    rows,
    stamp,
    superseded_versions,
)

from harness.cli import main
from harness.datastate import compare_databases, load_data_settings
from harness.datastate.columns import bucket, canonical
from reference_cryptobot.sync import main as sync_main


@pytest.fixture(scope="module")
def docker_dir(tmp_path_factory) -> Path:
    return make_docker_dir(tmp_path_factory.mktemp("docker") / "data")


def synced(docker_dir: Path, target: Path, drift: str = "") -> Path:
    assert sync_main(["--from", str(docker_dir), "--to", str(target), "--drift", drift]) == 0
    return target


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def run(capsys, primary: Path, candidate: Path, *extra: str) -> tuple[int, dict, str]:
    out_json = candidate.parent / f"{candidate.name}.json"
    capsys.readouterr()
    code = main(["data", "--primary-db", url(primary), "--candidate-db", url(candidate),
                 "--json", str(out_json), "--settle", "0.2", *extra])
    printed = capsys.readouterr()
    return code, json.loads(out_json.read_text()), printed.out + printed.err


def findings(result: dict, table: str, kind: str) -> list[dict]:
    state = next(t for t in result["tables"] if t["table"] == table)
    return [s for s in state["samples"] if s["kind"] == kind]


def counts(result: dict, table: str) -> dict[str, int]:
    return next(t for t in result["tables"] if t["table"] == table)["counts"]


@pytest.fixture
def every_row_sampled(monkeypatch):
    """Keep every finding, not a sample, so whole sets can be compared."""
    monkeypatch.setattr("harness.datastate.findings.SAMPLE_PER_KIND", 10**6)


def test_identical_copies_exit_0(docker_dir, tmp_path, capsys):
    code, result, out = run(capsys, docker_dir, synced(docker_dir, tmp_path / "native"))
    assert code == 0, out
    assert result["verdict"] == "same"
    assert {g: v["status"] for g, v in result["groups"].items()} == {
        "strategy": "ready", "trade": "ready"}
    assert all(t["rows"]["primary"] == t["rows"]["candidate"] > 0 for t in result["tables"])
    assert result["rows_fetched"] == 0  # identical tables: checksums only


def test_sync_drop_finds_exactly_the_dropped_versions(docker_dir, tmp_path, capsys,
                                                     every_row_sampled):
    candidate = synced(docker_dir, tmp_path / "native", "sync-drop")
    settings = load_data_settings()
    result = compare_databases(url(docker_dir), url(candidate),
                               settings.only(["strategy_versions"]))
    state = result.tables[0]
    expected = superseded_versions(docker_dir)
    assert expected and state.counts == {"missing": len(expected)}
    # every missing key is one sync-drop removed (the sample and, through the bisection, all)
    assert {(f.key["strategy_id"], f.key["version"]) for f in state.samples} == expected
    assert result.rows_fetched < 3 * (len(expected) + settings.fetch_below) * 2
    code, doc, out = run(capsys, docker_dir, candidate)
    assert code == 1
    assert doc["groups"]["strategy"]["status"] == "not ready"
    assert doc["groups"]["trade"]["status"] == "ready"
    assert "missing on the candidate" in out


def test_sync_float32_finds_exactly_the_narrowed_prices(docker_dir, tmp_path,
                                                      every_row_sampled):
    candidate = synced(docker_dir, tmp_path / "native", "sync-float32")
    result = compare_databases(url(docker_dir), url(candidate),
                               load_data_settings().only(["orders"]))
    state = result.tables[0]
    collected = []
    expected = float32_damaged(docker_dir)
    assert expected and state.counts == {"differing": len(expected)}
    assert dict(state.columns) == {"price": len(expected)}
    for sample in state.samples:
        collected.append(sample.key["id"])
        (difference,) = sample.differences
        assert difference.path == "orders.price" and "rel " in difference.message
    assert set(collected) == expected


def test_sync_tz_finds_every_timestamp_an_hour_late(docker_dir, tmp_path, capsys):
    candidate = synced(docker_dir, tmp_path / "native", "sync-tz")
    code, result, out = run(capsys, docker_dir, candidate)
    assert code == 1
    for table, file in (("strategies", "strategies"), ("strategy_versions", "strategies"),
                        ("orders", "orders")):
        (total,) = rows(docker_dir / f"{file}.sqlite", f"SELECT count(*) FROM {table}")[0]
        assert counts(result, table)["differing"] == total
        for sample in findings(result, table, "differing"):
            assert sample["differences"]
            assert all("+3600 s in UTC" in d["message"] for d in sample["differences"])
    assert "+3600 s in UTC" in out


def test_all_three_drifts_together_and_float_noise_is_not_a_finding(docker_dir, tmp_path,
                                                                     capsys):
    candidate = synced(docker_dir, tmp_path / "native", "sync-tz,sync-drop,sync-float32")
    code, result, _ = run(capsys, docker_dir, candidate)
    assert code == 1
    assert counts(result, "strategy_versions")["missing"] == len(superseded_versions(docker_dir))
    assert {g: v["status"] for g, v in result["groups"].items()} == {
        "strategy": "not ready", "trade": "not ready"}

    noisy = synced(docker_dir, tmp_path / "noisy")
    with sqlite3.connect(noisy / "orders.sqlite") as db:
        for order_id, price in db.execute("SELECT id, price FROM orders").fetchall():
            db.execute("UPDATE orders SET price = ? WHERE id = ?",
                       (math.nextafter(price, math.inf), order_id))  # ~1e-16 relative
    code, result, out = run(capsys, docker_dir, noisy)
    assert code == 0, out
    assert counts(result, "orders")["differing"] == 0


def test_null_vs_empty_string_is_reported_as_such(docker_dir, tmp_path, capsys):
    candidate = synced(docker_dir, tmp_path / "native")
    with sqlite3.connect(candidate / "orders.sqlite") as db:
        (order_id,) = db.execute("SELECT id FROM orders WHERE client_order_id IS NULL "
                                 "LIMIT 1").fetchone()
        db.execute("UPDATE orders SET client_order_id = '' WHERE id = ?", (order_id,))
    code, result, _ = run(capsys, docker_dir, candidate, "--table", "orders")
    assert code == 1
    (sample,) = findings(result, "orders", "differing")
    assert sample["key"] == {"id": order_id}
    assert sample["differences"][0]["message"] == "orders.client_order_id NULL vs empty string"


def test_rows_changed_during_the_run_are_in_flight_not_differences(docker_dir, tmp_path,
                                                                   capsys):
    candidate = synced(docker_dir, tmp_path / "native")
    since = datetime.now(UTC) - timedelta(seconds=5)
    primary = synced(docker_dir, tmp_path / "primary")  # the primary keeps being written
    with sqlite3.connect(primary / "strategies.sqlite") as db:
        db.execute("UPDATE strategies SET name = 'renamed', updated_at = ? WHERE id = 7",
                   (stamp(datetime.now(UTC)),))
    code, result, out = run(capsys, primary, candidate, "--since", since.isoformat())
    assert code == 0, out
    state = next(t for t in result["tables"] if t["table"] == "strategies")
    assert state["counts"]["in-flight"] == 1 and state["counts"]["differing"] == 0
    assert findings(result, "strategies", "in-flight")[0]["key"] == {"id": 7}
    # Without --since, the run's start is the limit: the same row is a plain difference.
    code, result, _ = run(capsys, primary, candidate)
    assert code == 1 and counts(result, "strategies")["differing"] == 1


def test_reverse_finds_rows_written_on_native_missing_on_docker(docker_dir, tmp_path, capsys):
    candidate = synced(docker_dir, tmp_path / "native")
    with sqlite3.connect(candidate / "strategies.sqlite") as db:
        db.execute("INSERT INTO strategies (name, description, parameters, is_active, "
                   "created_at, updated_at) VALUES ('after-cutover', '', '{}', 0, ?, ?)",
                   (stamp(datetime(2026, 1, 6, tzinfo=UTC)),) * 2)
        (new_id,) = db.execute("SELECT max(id) FROM strategies").fetchone()
    code, result, out = run(capsys, docker_dir, candidate, "--reverse", "--table", "strategies")
    assert code == 1
    assert result["direction"] == "candidate → primary"
    (sample,) = findings(result, "strategies", "missing")
    assert sample["key"] == {"id": new_id}
    assert "missing on the primary" in out
    code, result, _ = run(capsys, docker_dir, candidate, "--table", "strategies")
    assert code == 1 and findings(result, "strategies", "extra")[0]["key"] == {"id": new_id}


def test_bad_input_is_one_line_or_incomparable(docker_dir, tmp_path, capsys):
    candidate = synced(docker_dir, tmp_path / "native")
    for primary_url, expected in (("nonsense", "not a database URL"),
                                  (url(tmp_path / "nope.sqlite"), "no such file"),
                                  ("mysql://u:hunter2@localhost/x", "unsupported database")):
        capsys.readouterr()
        code = main(["data", "--primary-db", primary_url, "--candidate-db", url(candidate)])
        err = capsys.readouterr().err
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
        assert "hunter2" not in err
    with sqlite3.connect(candidate / "strategies.sqlite") as db:
        db.execute("DROP TABLE strategy_versions")
        db.execute("ALTER TABLE strategies ADD COLUMN extra TEXT")
    code, result, _ = run(capsys, docker_dir, candidate, "--table", "strategies",
                          "--table", "strategy_versions", "--table", "orders:venue")
    assert code == 1
    tables = {t["table"]: t for t in result["tables"]}
    assert tables["strategy_versions"]["reasons"] == [
        "strategy_versions: table missing on the candidate"]
    assert tables["strategies"]["reasons"] == [
        "strategies.extra: column missing on the primary"]
    assert tables["orders"]["status"] == "incomparable"
    assert "key (venue) is not unique" in tables["orders"]["reasons"][0]
    assert main(["data", "--primary-db", url(docker_dir), "--candidate-db", url(candidate),
                 "--table", "unknown_table"]) == 2
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    capsys.readouterr()
    assert main(["data", "--primary-db", url(empty), "--candidate-db", url(empty)]) == 2
    assert "none of the tables" in capsys.readouterr().err


def test_normalisation_buckets_and_times():
    # any two values further apart than the tolerance land in different buckets
    for x in (1.0, 67000.12345678, -3.5e-7, 9.999999999e5):
        assert bucket(x, 1e-9, 0) != bucket(x * (1 + 3e-9), 1e-9, 0)
        assert bucket(x, 1e-9, 0) == bucket(x, 1e-9, 0)
    assert canonical("2026-01-05T10:30:00.5+01:00", "ts", precision=3) == \
        canonical("2026-01-05T09:30:00.500Z", "ts", precision=3) == "2026-01-05 09:30:00.5"
    assert canonical(None, "text") != canonical("", "text")
    assert canonical(True, "int") == canonical(1, "int") == "1"
    assert canonical("1.50", "dec") == canonical(1.5, "dec") == "1.5"


def test_report_shows_the_data_state_section_and_gates(docker_dir, tmp_path, capsys):
    candidate = synced(docker_dir, tmp_path / "native", "sync-drop")
    report = tmp_path / "data.html"
    code, _result, _ = run(capsys, docker_dir, candidate, "--report", str(report))
    assert code == 1
    html = report.read_text()
    assert 'id="data-state"' in html and 'data-table="strategy_versions"' in html
    assert "not ready" in html and "missing on" not in html.split('id="data-state"')[0]


def test_data_config_mistakes_are_one_line(docker_dir, tmp_path, capsys):
    from harness.config import load_config

    for text, expected in (
        ('[data.tables.orders]\nkey = []\n', "data.tables.orders.key: a table needs at least"),
        ('[data.tables.orders]\nkey = ["id"]\ngroup = "nope"\n', "unknown group 'nope'"),
        ('[data.tables.orders]\nkey = ["id"]\ntolerance = { price = { rtol = -1 } }\n',
         "data.tables.orders.tolerance.price.rtol"),
        ('[data]\nsegment = 3\n', "data.segment: unknown key"),
    ):
        config = tmp_path / "parity.toml"
        config.write_text(text)
        capsys.readouterr()
        code = main(["data", "--primary-db", url(docker_dir), "--candidate-db", url(docker_dir),
                     "--config", str(config)])
        err = capsys.readouterr().err
        assert code == 2 and expected in err and str(config) in err, err
        assert len(err.strip().splitlines()) == 1
    # the rest of parity.toml's readers accept a [data] table
    config.write_text('[data]\nsettle_s = 0.5\n')
    assert load_config(config).source == str(config)


def test_a_key_of_mixed_types_is_incomparable_not_a_crash(tmp_path, capsys):
    paths = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.sqlite"
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE t (k INTEGER, v TEXT)")  # sqlite keeps 'x50' as text
            db.executemany("INSERT INTO t VALUES (?, ?)", [
                (i if i % 50 else f"x{i}", f"v{i}{name if i == 7 else ''}") for i in range(600)])
        paths.append(path)
    code, result, _ = run(capsys, *paths, "--table", "t:k")
    assert code == 1
    state = result["tables"][0]
    assert state["status"] == "incomparable" and "cannot bisect its key" in state["reasons"][0]
