"""Strategy service: CRUD, activate/deactivate and versions, persisted in sqlite.

    GET    /api/strategies/?active_only=true  → [StrategyResponse], by id
    POST   /api/strategies/                   → 201 StrategyResponse (version 1)
    GET    /api/strategies/{id}               → StrategyResponse + versions
    PUT    /api/strategies/{id}               → StrategyResponse (new version when
                                                 the parameters change)
    DELETE /api/strategies/{id}               → 204
    POST   /api/strategies/{id}/activate      → StrategyResponse
    POST   /api/strategies/{id}/deactivate    → StrategyResponse
    GET    /api/strategies/{id}/versions      → [StrategyVersion], oldest first

As in the spec, the list shows active strategies only unless `active_only=false`. Ids are
integers numbered by each copy's own database. The `list-order` drift lists newest first.
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
import threading
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field

from reference_cryptobot.clock import now_iso
from reference_cryptobot.settings import Settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS strategies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    parameters TEXT NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS strategy_versions (
    strategy_id INTEGER NOT NULL REFERENCES strategies(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    parameters TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (strategy_id, version)
);
"""


class StrategyCreate(BaseModel):
    """A new strategy."""

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    parameters: dict[str, Any] = Field(default_factory=dict)
    is_active: bool = False


class StrategyUpdate(BaseModel):
    """Fields to change; changed parameters make a new version."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    parameters: dict[str, Any] | None = None
    is_active: bool | None = None


def _encode(parameters: dict[str, Any]) -> str:
    return json.dumps(parameters, sort_keys=True, ensure_ascii=False)


class StrategyStore:
    """Strategies and their versions in one sqlite file (one connection, serialised)."""

    def __init__(self, path: pathlib.Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def list(self, *, active_only: bool, newest_first: bool) -> list[dict[str, Any]]:
        """Strategies by id."""
        where = " WHERE is_active = 1" if active_only else ""
        order = "DESC" if newest_first else "ASC"
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM strategies{where} ORDER BY id {order}").fetchall()
        return [_public(row) for row in rows]

    def get(self, strategy_id: int) -> dict[str, Any]:
        """One strategy; 404 when there is none."""
        with self._lock:
            row = self._db.execute("SELECT * FROM strategies WHERE id = ?",
                                   (strategy_id,)).fetchone()
        if row is None:
            raise HTTPException(status_code=404, detail="Strategy not found")
        return _public(row)

    def create(self, body: StrategyCreate) -> int:
        """Insert a strategy with its version 1; its id."""
        now, params = now_iso(), _encode(body.parameters)
        with self._lock, self._transaction():
            new_id = self._db.execute(
                "INSERT INTO strategies (name, description, parameters, is_active, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (body.name, body.description, params, int(body.is_active), now, now),
            ).lastrowid
            self._db.execute("INSERT INTO strategy_versions VALUES (?, 1, ?, ?, ?)",
                             (new_id, params, body.description, now))
        return int(new_id)

    def update(self, strategy_id: int, body: StrategyUpdate) -> None:
        """Apply the given fields; a new version when the parameters change."""
        with self._lock:
            current = self.get(strategy_id)
            self._write(strategy_id, current, body)

    def _write(self, strategy_id: int, current: dict[str, Any], body: StrategyUpdate) -> None:
        now = now_iso()
        name = current["name"] if body.name is None else body.name
        description = current["description"] if body.description is None else body.description
        active = current["is_active"] if body.is_active is None else body.is_active
        params = _encode(current["parameters"] if body.parameters is None else body.parameters)
        changed = params != _encode(current["parameters"])
        version = current["version"] + int(changed)
        with self._transaction():
            self._db.execute(
                "UPDATE strategies SET name = ?, description = ?, parameters = ?, is_active = ?, "
                "version = ?, updated_at = ? WHERE id = ?",
                (name, description, params, int(active), version, now, strategy_id),
            )
            if changed:
                self._db.execute("INSERT INTO strategy_versions VALUES (?, ?, ?, ?, ?)",
                                 (strategy_id, version, params, description, now))

    def delete(self, strategy_id: int) -> None:
        """Delete a strategy and its versions."""
        with self._lock, self._transaction():
            self.get(strategy_id)
            self._db.execute("DELETE FROM strategy_versions WHERE strategy_id = ?",
                             (strategy_id,))
            self._db.execute("DELETE FROM strategies WHERE id = ?", (strategy_id,))

    def versions(self, strategy_id: int) -> list[dict[str, Any]]:
        """Every version of a strategy, oldest first."""
        with self._lock:
            self.get(strategy_id)
            rows = self._db.execute(
                "SELECT * FROM strategy_versions WHERE strategy_id = ? ORDER BY version",
                (strategy_id,),
            ).fetchall()
        return [{"strategy_id": r["strategy_id"], "version": r["version"],
                 "parameters": json.loads(r["parameters"]), "description": r["description"],
                 "created_at": r["created_at"]} for r in rows]

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN … COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def _public(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "parameters": json.loads(row["parameters"]),
        "is_active": bool(row["is_active"]),
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


router = APIRouter(prefix="/api/strategies", tags=["strategies"])
StrategyId = Annotated[int, Path(alias="id", description="ID of the strategy")]


def _store(request: Request) -> StrategyStore:
    return request.app.state.strategies


@router.get("/")
def list_strategies(request: Request, active_only: bool = True) -> list[dict[str, Any]]:
    """Strategies ordered by id (only active ones unless `active_only=false`)."""
    newest_first = request.app.state.settings.has("list-order")
    return _store(request).list(active_only=active_only, newest_first=newest_first)


@router.post("/", status_code=201)
def create_strategy(request: Request, body: StrategyCreate) -> dict[str, Any]:
    """Create a strategy (version 1)."""
    store = _store(request)
    return store.get(store.create(body))


@router.get("/{id}")
def get_strategy(request: Request, strategy_id: StrategyId) -> dict[str, Any]:
    """One strategy with its version history."""
    store = _store(request)
    return {**store.get(strategy_id),
            "versions": [{"version": v["version"], "parameters": v["parameters"]}
                         for v in store.versions(strategy_id)]}


@router.put("/{id}")
def update_strategy(request: Request, strategy_id: StrategyId,
                    body: StrategyUpdate) -> dict[str, Any]:
    """Change a strategy; new parameters make a new version."""
    store = _store(request)
    store.update(strategy_id, body)
    return store.get(strategy_id)


@router.delete("/{id}", status_code=204)
def delete_strategy(request: Request, strategy_id: StrategyId) -> Response:
    """Delete a strategy and its versions."""
    _store(request).delete(strategy_id)
    return Response(status_code=204)


@router.post("/{id}/activate")
def activate(request: Request, strategy_id: StrategyId) -> dict[str, Any]:
    """Switch a strategy on."""
    store = _store(request)
    store.update(strategy_id, StrategyUpdate(is_active=True))
    return store.get(strategy_id)


@router.post("/{id}/deactivate")
def deactivate(request: Request, strategy_id: StrategyId) -> dict[str, Any]:
    """Switch a strategy off."""
    store = _store(request)
    store.update(strategy_id, StrategyUpdate(is_active=False))
    return store.get(strategy_id)


@router.get("/{id}/versions")
def versions(request: Request, strategy_id: StrategyId) -> list[dict[str, Any]]:
    """Every version of a strategy, oldest first."""
    return _store(request).versions(strategy_id)


def install(app: FastAPI, settings: Settings, data_dir: pathlib.Path) -> None:
    """Add the strategy service (routes and its sqlite store) to the app."""
    app.state.strategies = StrategyStore(data_dir / "strategies.sqlite")
    app.include_router(router)
