"""A migration's data sync job: copy one Cryptobot copy's databases into another's data dir.

    python -m reference_cryptobot.sync --from DATA_DIR --to DATA_DIR [--drift sync-tz,...]

Every `*.sqlite` file of the source is copied table by table into the file of the same name in
the destination (tables created when missing; their rows replaced in one transaction), as a
nightly sync from Docker to native would. Documented bugs can be switched on, each damaging
exactly the rows named below (what `parity data` must find):

| drift          | what the sync does wrong                                                   |
|----------------|----------------------------------------------------------------------------|
| `sync-tz`      | timestamp columns (`created_at`, `updated_at`) written in the host's local |
|                | time (UTC+1) without their zone: read back as UTC, one hour late           |
| `sync-drop`    | `strategy_versions`: only each strategy's current version is copied; the   |
|                | superseded versions are dropped                                            |
| `sync-float32` | `orders.price` narrowed to float32 (a 4-byte REAL on the way)              |

Values inside JSON text (the order `body`) are copied verbatim: the damage is in the columns.
"""

from __future__ import annotations

import argparse
import sqlite3
import struct
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

SYNC_DRIFTS = {
    "sync-tz": "timestamps written in local time (UTC+1) without their zone",
    "sync-drop": "strategy_versions: superseded versions dropped (current version only)",
    "sync-float32": "orders.price narrowed to float32",
}
TIME_COLUMNS = ("created_at", "updated_at")
HOST_ZONE = timezone(timedelta(hours=1))
BATCH = 1000


def parse_sync_drifts(names: str | Iterable[str]) -> frozenset[str]:
    """`"a,b"` → the set of sync drift names; ValueError naming an unknown one."""
    parts = names.split(",") if isinstance(names, str) else list(names)
    drifts = frozenset(p.strip() for p in parts if p and p.strip())
    unknown = sorted(drifts - SYNC_DRIFTS.keys())
    if unknown:
        raise ValueError(f"unknown sync drift {unknown[0]!r} (known: {', '.join(SYNC_DRIFTS)})")
    return drifts


def local_without_zone(value: Any) -> Any:
    """The sync-tz bug: an instant rendered in the host's zone, the zone dropped."""
    if not isinstance(value, str):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return moment.astimezone(HOST_ZONE).replace(tzinfo=None).isoformat(timespec="microseconds")


def float32(value: Any) -> Any:
    """The sync-float32 bug: a double narrowed to single precision."""
    if isinstance(value, float):
        return struct.unpack("f", struct.pack("f", value))[0]
    return value


def _rows(source: sqlite3.Connection, table: str, columns: list[str],
          drifts: frozenset[str]) -> Iterable[tuple[Any, ...]]:
    cursor = source.execute(f'SELECT * FROM "{table}"')
    keep_version: dict[Any, int] = {}
    if "sync-drop" in drifts and table == "strategy_versions":
        keep_version = dict(source.execute(
            "SELECT strategy_id, max(version) FROM strategy_versions GROUP BY strategy_id"))
    times = [i for i, c in enumerate(columns) if c in TIME_COLUMNS] if "sync-tz" in drifts else []
    price = columns.index("price") if "sync-float32" in drifts and table == "orders" \
        and "price" in columns else None
    for row in cursor:
        if keep_version and row[columns.index("version")] != keep_version.get(
                row[columns.index("strategy_id")]):
            continue
        values = list(row)
        for i in times:
            values[i] = local_without_zone(values[i])
        if price is not None:
            values[price] = float32(values[price])
        yield tuple(values)


def sync_file(source_path: Path, target_path: Path, drifts: frozenset[str]) -> int:
    """Copy every table of one sqlite file; the number of rows written."""
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    target = sqlite3.connect(target_path, isolation_level=None)
    written = 0
    try:
        schema = source.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index'").fetchall()
        target.execute("BEGIN IMMEDIATE")
        for kind, name, sql in schema:
            exists = target.execute("SELECT 1 FROM sqlite_master WHERE type = ? AND name = ?",
                                    (kind, name)).fetchone()
            if not exists:
                target.execute(sql)
        for kind, name, _sql in schema:
            if kind != "table":
                continue
            columns = [c[1] for c in source.execute(f'PRAGMA table_info("{name}")')]
            target.execute(f'DELETE FROM "{name}"')
            names = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
            insert = f'INSERT INTO "{name}" ({names}) VALUES ({", ".join("?" * len(columns))})'
            batch: list[tuple[Any, ...]] = []
            for row in _rows(source, name, columns, drifts):
                batch.append(row)
                if len(batch) >= BATCH:
                    target.executemany(insert, batch)
                    written, batch = written + len(batch), []
            target.executemany(insert, batch)
            written += len(batch)
        target.execute("COMMIT")
    except BaseException:
        if target.in_transaction:
            target.execute("ROLLBACK")
        raise
    finally:
        source.close()
        target.close()
    return written


def sync(source_dir: Path, target_dir: Path, drifts: frozenset[str] = frozenset()) -> int:
    """Copy every `*.sqlite` of `source_dir` into `target_dir`; the number of rows written."""
    files = sorted(Path(source_dir).glob("*.sqlite"))
    if not files:
        raise FileNotFoundError(f"{source_dir}: no *.sqlite file to sync")
    Path(target_dir).mkdir(parents=True, exist_ok=True)
    return sum(sync_file(path, Path(target_dir) / path.name, drifts) for path in files)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the sync job."""
    parser = argparse.ArgumentParser(
        prog="python -m reference_cryptobot.sync",
        description="Copy a reference Cryptobot's databases into another copy's data dir.",
        epilog="drifts: " + "; ".join(f"{k}: {v}" for k, v in SYNC_DRIFTS.items()))
    parser.add_argument("--from", dest="source", required=True, metavar="DATA_DIR")
    parser.add_argument("--to", dest="target", required=True, metavar="DATA_DIR")
    parser.add_argument("--drift", default="", metavar="NAME[,NAME...]",
                        help=", ".join(SYNC_DRIFTS))
    args = parser.parse_args(argv)
    try:
        drifts = parse_sync_drifts(args.drift)
        rows = sync(Path(args.source), Path(args.target), drifts)
    except (ValueError, OSError, sqlite3.Error) as exc:
        print(f"sync: error: {exc}", file=sys.stderr)
        return 2
    print(f"synced {rows} rows from {args.source} to {args.target}"
          + (f" (drifts: {', '.join(sorted(drifts))})" if drifts else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
