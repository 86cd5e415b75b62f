"""Data for the data-state tests: a Docker copy's data dir written by the reference Cryptobot's own
stores, what each sync drift damages (computed from that data, independently of `parity data`),
and a loader into a natively typed PostgreSQL schema."""

from __future__ import annotations

import random
import shutil
import sqlite3
import struct
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reference_cryptobot.orders import OrderBook
from reference_cryptobot.strategy import StrategyCreate, StrategyStore, StrategyUpdate

EPOCH = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    """The reference app's time format."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_docker_dir(path: Path, *, strategies: int = 300, orders: int = 400,
                    seed: int = 3) -> Path:
    """A data dir as the Docker primary leaves it (strategies with new versions, real orders);
    every timestamp in the past. Written in memory-backed /dev/shm when there is one (the stores
    commit every row), then copied to `path`."""
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as scratch:
        _write(Path(scratch), strategies, orders, seed)
        shutil.copytree(scratch, path, dirs_exist_ok=True)
    return path


def _write(path: Path, strategies: int, orders: int, seed: int) -> None:
    rng = random.Random(seed)
    store = StrategyStore(path / "strategies.sqlite")
    for i in range(strategies):
        sid = store.create(StrategyCreate(name=f"sma-{i}", description=f"strategy {i}",
                                          parameters={"fast": i % 20, "slow": 30}))
        if i % 3 == 0:
            store.update(sid, StrategyUpdate(parameters={"fast": i % 20 + 1, "slow": 31}))
    store.close()
    book = OrderBook(path / "orders.sqlite")
    for i in range(orders):
        moment = stamp(EPOCH + timedelta(seconds=37 * i, microseconds=rng.randrange(10**6)))
        book.place("trade" if i % 4 else "paper", {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "client_order_id": f"c-{i}" if i % 2 else None,
            "price": round(rng.uniform(20_000, 70_000), 8), "amount": 0.1,
            "created_at": moment, "updated_at": moment})
    book.close()
    # Past timestamps (the stores stamp the wall clock): rows are not "in flight".
    with sqlite3.connect(path / "strategies.sqlite") as db:
        for table in ("strategies", "strategy_versions"):
            db.execute(f"UPDATE {table} SET created_at = ?"
                       + (", updated_at = ?" if table == "strategies" else ""),
                       (stamp(EPOCH),) * (2 if table == "strategies" else 1))


def rows(path: Path, sql: str) -> list[tuple]:
    """Rows of a query on one sqlite file."""
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def superseded_versions(data_dir: Path) -> set[tuple[int, int]]:
    """(strategy_id, version) keys sync-drop removes."""
    return set(rows(data_dir / "strategies.sqlite",
                    "SELECT v.strategy_id, v.version FROM strategy_versions v JOIN strategies s "
                    "ON s.id = v.strategy_id WHERE v.version < s.version"))


def float32_damaged(data_dir: Path, rtol: float = 1e-9) -> set[str]:
    """Order ids whose price float32 moves beyond the tolerance."""
    out = set()
    for order_id, price in rows(data_dir / "orders.sqlite", "SELECT id, price FROM orders"):
        narrowed = struct.unpack("f", struct.pack("f", price))[0]
        if abs(narrowed - price) > rtol * max(abs(price), abs(narrowed)):
            out.add(order_id)
    return out


NATIVE_SCHEMA = """
CREATE TABLE strategies (id bigint PRIMARY KEY, name text NOT NULL, description text NOT NULL,
    parameters text NOT NULL, is_active boolean NOT NULL, version integer NOT NULL,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE strategy_versions (strategy_id bigint NOT NULL, version integer NOT NULL,
    parameters text NOT NULL, description text NOT NULL, created_at timestamptz NOT NULL,
    PRIMARY KEY (strategy_id, version));
CREATE TABLE orders (seq bigint NOT NULL, id uuid PRIMARY KEY, venue text NOT NULL,
    client_order_id text, body text NOT NULL, price double precision,
    updated_at timestamptz);
"""


def load_into_pg(data_dir: Path, dsn: str) -> None:
    """Copy a data dir into a PostgreSQL database typed as a native deployment would type it
    (boolean, timestamptz, uuid, double precision); zone-less times are read as UTC."""
    import psycopg

    with psycopg.connect(dsn, options="-c TimeZone=UTC") as pg:
        pg.execute(NATIVE_SCHEMA)
        for file, table in (("strategies", "strategies"), ("strategies", "strategy_versions"),
                            ("orders", "orders")):
            with sqlite3.connect(data_dir / f"{file}.sqlite") as db:
                cursor = db.execute(f"SELECT * FROM {table}")
                names = [d[0] for d in cursor.description]
                data = [tuple(bool(v) if n == "is_active" else v for n, v in zip(names, r,
                                                                                  strict=True))
                        for r in cursor]
            with pg.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES "
                                f"({', '.join(['%s'] * len(names))})", data)
