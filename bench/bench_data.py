"""`parity data` on PostgreSQL against a bare checksum scan, measured side by side.

    .venv/bin/python bench/bench_data.py [--rows 1000000] [--repeat 3]

A throwaway cluster holds two databases, each with one table of `--rows` rows (generated inside
PostgreSQL with generate_series: bigint key, double price, timestamptz, numeric, text):

- identical: `parity data`'s time against the baseline, a bare
  `SELECT count(*), sum(<md5 row hash>)` over the raw columns, run on both databases at once (what
  any in-database checksum must at least do). Goal: ≤ 1.5×. Each the median of `--repeat` runs,
  alternating.
- 10 rows changed on the candidate: time, queries and rows fetched. Goals: all 10 found, fewer
  than 1 % of the rows fetched.
- memory: Python's peak allocation (tracemalloc) of the 10-rows run at `--rows` / 10 and at
  `--rows`: flat in table size.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import psycopg

from harness.datastate import compare_databases, load_data_settings
from harness.datastate.pgcluster import ThrowawayCluster

TABLE = "ticks"
SCHEMA = (f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, price double precision, "
          "at timestamptz, qty numeric(18, 8), note text)")
FILL = (f"INSERT INTO {TABLE} SELECT i, 20000 + (i % 50000) * 1.0625, "
        "'2026-01-01'::timestamptz + i * interval '1 second', (i % 997) * 0.125, 'note ' || i "
        "FROM generate_series(1, %s) AS i")
BARE = (f"SELECT count(*), sum(('x' || left(md5(id::text || chr(31) || price::text || chr(31) "
        f"|| at::text || chr(31) || qty::text || chr(31) || note), 16))::bit(64)::bigint) "
        f"FROM {TABLE}")
GOAL_RATIO, GOAL_FETCHED = 1.5, 0.01


def load(cluster: ThrowawayCluster, name: str, rows: int) -> str:
    url = cluster.create_database(name)
    with psycopg.connect(cluster.dsn(name)) as pg:
        pg.execute(SCHEMA)
        pg.execute(FILL.replace("%s", str(int(rows))))
    with psycopg.connect(cluster.dsn(name), autocommit=True) as pg:
        pg.execute(f"VACUUM ANALYZE {TABLE}")
    return url


def bare(cluster: ThrowawayCluster, names: tuple[str, str]) -> float:
    def one(name: str) -> tuple:
        with psycopg.connect(cluster.dsn(name)) as pg:
            return pg.execute(BARE).fetchone()

    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, names))
    return time.perf_counter() - started


def parity(urls: tuple[str, str]):
    settings = load_data_settings().only([f"{TABLE}:id"])
    started = time.perf_counter()
    result = compare_databases(*urls, settings, settle_s=0)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with ThrowawayCluster() as cluster:
        started = time.perf_counter()
        urls = (load(cluster, "primary", args.rows), load(cluster, "candidate", args.rows))
        print(f"loaded 2 × {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
        parity(urls)  # warm the caches once
        base_times, parity_times = [], []
        for _ in range(args.repeat):
            base_times.append(bare(cluster, ("primary", "candidate")))
            elapsed, result = parity(urls)
            assert not result.differs, "identical tables reported different"
            parity_times.append(elapsed)
        base, ours = statistics.median(base_times), statistics.median(parity_times)
        print(f"identical: parity data {ours:.2f} s, bare count+sum(md5) on both {base:.2f} s, "
              f"ratio {ours / base:.2f}× (goal ≤ {GOAL_RATIO}×); {result.queries} queries, "
              f"{result.rows_fetched} rows fetched")

        with psycopg.connect(cluster.dsn("candidate")) as pg:
            changed = pg.execute(f"UPDATE {TABLE} SET note = note || '!' WHERE id IN (SELECT "
                                 f"(i::bigint * 7919 * 104729) % {args.rows} + 1 FROM "
                                 "generate_series(1, 10) AS i) RETURNING id").fetchall()
        changed_ids = sorted(r[0] for r in changed)
        tracemalloc.start()
        elapsed, result = parity(urls)
        _, peak_big = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        state = result.tables[0]
        found = sorted(s.key["id"] for s in state.samples)
        verdict = "all" if found == changed_ids else f"MISSED {set(changed_ids) - set(found)}"
        share = result.rows_fetched / (2 * args.rows)
        print(f"10 rows changed: {elapsed:.2f} s, {result.queries} queries, "
              f"{result.rows_fetched:,} rows fetched ({share:.3%} of both tables; goal < "
              f"{GOAL_FETCHED:.0%}), found {state.counts['differing']} of {len(changed_ids)}: "
              f"{verdict}")

        small = args.rows // 10
        small_urls = (load(cluster, "primary_small", small),
                      load(cluster, "candidate_small", small))
        with psycopg.connect(cluster.dsn("candidate_small")) as pg:
            pg.execute(f"UPDATE {TABLE} SET note = note || '!' WHERE id % {max(small // 10, 1)} "
                       "= 1 AND id <= 10 * " + str(max(small // 10, 1)))
        tracemalloc.start()
        parity(small_urls)
        _, peak_small = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"memory (Python peak, 10 rows changed): {peak_small / 1e6:.1f} MB at {small:,} "
              f"rows, {peak_big / 1e6:.1f} MB at {args.rows:,} rows")


if __name__ == "__main__":
    main()
