"""`parity data` on a real PostgreSQL (a throwaway cluster: initdb + pg_ctl on a free port):
natively typed tables (boolean, timestamptz, uuid, double precision) loaded from the reference
Cryptobot's data with the sync drifts; sqlite (Docker) against PostgreSQL (native); passwords never
shown; types that cannot be normalised are incomparable."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from datastate_support import float32_damaged, load_into_pg, make_docker_dir, superseded_versions

from harness.cli import main
from harness.datastate.pgcluster import PASSWORD, ThrowawayCluster, find_bindir
from reference_cryptobot.sync import main as sync_main

pytestmark = pytest.mark.skipif(
    find_bindir() is None,
    reason="PostgreSQL's initdb not found (.ci/run installs the postgresql package)")


@pytest.fixture(scope="module")
def cluster():
    with ThrowawayCluster() as pg:
        yield pg


@pytest.fixture(scope="module")
def copies(tmp_path_factory, cluster) -> dict[str, tuple[Path, str]]:
    """name -> (sqlite data dir, PostgreSQL URL of the same data)."""
    base = tmp_path_factory.mktemp("pg-copies")
    docker = make_docker_dir(base / "docker", strategies=150, orders=600)
    out = {}
    for name, drift in (("docker", None), ("clean", ""), ("tz", "sync-tz"),
                        ("drop", "sync-drop"), ("float32", "sync-float32"),
                        ("all", "sync-tz,sync-drop,sync-float32")):
        path = docker if drift is None else base / name
        if drift is not None:
            assert sync_main(["--from", str(docker), "--to", str(path), "--drift", drift]) == 0
        url = cluster.create_database(name)
        load_into_pg(path, cluster.dsn(name))
        out[name] = (path, url)
    return out


def run(capsys, tmp_path, primary: str, candidate: str, *extra: str) -> tuple[int, dict, str]:
    out_json = tmp_path / "data.json"
    capsys.readouterr()
    code = main(["data", "--primary-db", primary, "--candidate-db", candidate,
                 "--json", str(out_json), "--settle", "0.2", *extra])
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert PASSWORD not in text
    return code, json.loads(out_json.read_text()), text


def table(result: dict, name: str) -> dict:
    return next(t for t in result["tables"] if t["table"] == name)


def test_identical_pg_databases_exit_0(copies, capsys, tmp_path):
    code, result, out = run(capsys, tmp_path, copies["docker"][1], copies["clean"][1])
    assert code == 0, out
    assert result["rows_fetched"] == 0
    assert PASSWORD not in (tmp_path / "data.json").read_text()


def test_docker_sqlite_against_native_postgresql_is_the_same_data(copies, capsys, tmp_path):
    """Different engines, different types (0/1 vs boolean, ISO text vs timestamptz, text vs
    uuid): the normalised checksums agree, so nothing is fetched."""
    code, result, out = run(capsys, tmp_path, f"sqlite:///{copies['docker'][0]}",
                            copies["clean"][1])
    assert code == 0, out
    assert result["rows_fetched"] == 0
    code, result, _ = run(capsys, tmp_path, f"sqlite:///{copies['docker'][0]}", copies["all"][1])
    assert code == 1
    assert table(result, "strategy_versions")["counts"]["missing"] == \
        len(superseded_versions(copies["docker"][0]))


def test_each_sync_drift_is_found_on_postgresql(copies, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("harness.datastate.findings.SAMPLE_PER_KIND", 10**6)
    docker_dir, docker = copies["docker"]
    code, result, _ = run(capsys, tmp_path, docker, copies["drop"][1])
    assert code == 1
    missing = {(s["key"]["strategy_id"], s["key"]["version"])
               for s in table(result, "strategy_versions")["samples"]}
    assert missing == superseded_versions(docker_dir)
    assert table(result, "strategies")["status"] == table(result, "orders")["status"] == "same"

    code, result, _ = run(capsys, tmp_path, docker, copies["float32"][1])
    assert code == 1
    orders = table(result, "orders")
    assert {s["key"]["id"] for s in orders["samples"]} == float32_damaged(docker_dir)
    assert orders["columns"] == {"price": len(float32_damaged(docker_dir))}

    code, result, _ = run(capsys, tmp_path, docker, copies["tz"][1])
    assert code == 1
    for name in ("strategies", "strategy_versions", "orders"):
        state = table(result, name)
        assert state["counts"]["differing"] == state["rows"]["primary"]
        assert all("+3600 s in UTC" in d["message"] for s in state["samples"]
                   for d in s["differences"])


def test_float_noise_and_in_flight_rows_on_postgresql(copies, cluster, capsys, tmp_path):
    url = cluster.create_database("noisy")
    load_into_pg(copies["docker"][0], cluster.dsn("noisy"))
    with psycopg.connect(cluster.dsn("noisy")) as pg:
        pg.execute("UPDATE orders SET price = price * (1 + 2e-16)")
        pg.execute("UPDATE strategies SET name = 'renamed', updated_at = now() WHERE id = 3")
    code, result, out = run(capsys, tmp_path, copies["docker"][1], url, "--reverse",
                            "--since", "2026-01-05T12:00:00Z")
    assert code == 0, out
    assert table(result, "orders")["counts"]["differing"] == 0
    in_flight = [s for s in table(result, "strategies")["samples"] if s["kind"] == "in-flight"]
    assert [s["key"] for s in in_flight] == [{"id": 3}]


def test_wrong_password_and_unusable_types(copies, cluster, capsys, tmp_path):
    wrong = cluster.url("docker", password="not-the-password-42")
    capsys.readouterr()
    assert main(["data", "--primary-db", wrong, "--candidate-db", copies["clean"][1]]) == 2
    err = capsys.readouterr().err
    assert "primary database" in err and "cannot connect" in err
    assert "not-the-password-42" not in err and PASSWORD not in err
    assert len(err.strip().splitlines()) == 1

    url = cluster.create_database("odd")
    with psycopg.connect(cluster.dsn("odd")) as pg:
        pg.execute("CREATE TABLE strategies (id bigint PRIMARY KEY, spot point)")
    code, result, _ = run(capsys, tmp_path, url, url, "--table", "strategies")
    assert code == 1
    state = table(result, "strategies")
    assert state["status"] == "incomparable" and "cannot be normalised" in state["reasons"][0]


def test_few_changed_rows_in_a_big_table_fetch_few_rows(cluster, capsys, tmp_path):
    """The bisection narrows 3 changed rows of 20 000 down to small segments: the checksums run
    inside PostgreSQL, only those segments' rows are downloaded."""
    urls = []
    for name in ("big_p", "big_c"):
        urls.append(cluster.create_database(name))
        with psycopg.connect(cluster.dsn(name)) as pg:
            pg.execute("CREATE TABLE ticks (id bigint PRIMARY KEY, price double precision, "
                       "at timestamptz, note text)")
            pg.execute("INSERT INTO ticks SELECT i, 100 + i * 0.25, "
                       "'2026-01-01'::timestamptz + i * interval '1 second', 'n' || i "
                       "FROM generate_series(1, 20000) AS i")
    with psycopg.connect(cluster.dsn("big_c")) as pg:
        pg.execute("UPDATE ticks SET note = 'changed' WHERE id IN (17, 9001, 19999)")
    code, result, _ = run(capsys, tmp_path, *urls, "--table", "ticks:id")
    assert code == 1
    state = table(result, "ticks")
    assert sorted(s["key"]["id"] for s in state["samples"]) == [17, 9001, 19999]
    assert result["rows_fetched"] < 0.05 * 2 * 20000


def test_times_compare_at_the_coarser_precision_across_engines(cluster, capsys, tmp_path):
    """sqlite keeps hundredths in its text, PostgreSQL microseconds in a timestamptz: equal at
    hundredths; a real shift is still found."""
    import sqlite3

    url = cluster.create_database("fine")
    with psycopg.connect(cluster.dsn("fine")) as pg:
        pg.execute("CREATE TABLE events (id int PRIMARY KEY, at timestamptz)")
        pg.execute("INSERT INTO events VALUES (1, '2026-01-05 09:30:01.123456+00'), "
                   "(2, '2026-01-05 10:30:00.999999+01'), (3, '2026-01-05 09:30:07+00')")
    coarse = tmp_path / "coarse.sqlite"
    with sqlite3.connect(coarse) as db:
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, at TEXT)")
        db.executemany("INSERT INTO events VALUES (?, ?)", [
            (1, "2026-01-05T09:30:01.12Z"), (2, "2026-01-05T09:30:00.99Z"),
            (3, "2026-01-05T09:30:08.00Z")])
    config = tmp_path / "parity.toml"
    config.write_text('[data.tables.events]\nkey = ["id"]\ntime = ["at"]\n')
    code, result, _ = run(capsys, tmp_path, f"sqlite:///{coarse}", url, "--config", str(config),
                          "--table", "events")
    assert code == 1
    (sample,) = table(result, "events")["samples"]
    assert sample["key"] == {"id": 3} and "(-1 s in UTC)" in sample["differences"][0]["message"]


def test_a_row_written_while_the_diff_runs_is_in_flight(copies, cluster, capsys, tmp_path):
    """A writer takes the primary's orders table, waits until `parity data` is blocked on it (so
    the run has started), changes a row and commits: that row is rechecked and reported in
    flight, not as a difference (exit 0)."""
    import threading
    import time

    urls = []
    for name in ("live_p", "live_c"):
        urls.append(cluster.create_database(name))
        load_into_pg(copies["docker"][0], cluster.dsn(name))
    with psycopg.connect(cluster.dsn("live_p")) as pg:
        (order_id,) = pg.execute("SELECT id FROM orders ORDER BY id LIMIT 1").fetchone()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with psycopg.connect(cluster.dsn("live_p")) as pg:
                pg.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
                deadline = time.monotonic() + 120
                while pg.execute("SELECT pg_stat_clear_snapshot()") and not pg.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE datname = 'live_p' AND "
                        "wait_event_type = 'Lock' AND pid <> pg_backend_pid()").fetchone():
                    assert time.monotonic() < deadline, "parity data never reached orders"
                    time.sleep(0.05)
                pg.execute("UPDATE orders SET price = price + 1, updated_at = clock_timestamp() "
                           "WHERE id = %s", (order_id,))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        code, result, out = run(capsys, tmp_path, *urls, "--table", "orders")
    finally:
        thread.join(150)
    assert not errors, errors
    assert code == 0, out
    orders = table(result, "orders")
    assert orders["counts"]["in-flight"] == 1 and orders["counts"]["differing"] == 0
    assert orders["samples"][0]["key"] == {"id": str(order_id)}
    assert "in flight: orders" in out
