"""Strategy service: CRUD, activate/deactivate and versions, persisted in sqlite."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

SCHEMA = """
CREATE TABLE IF NOT EXISTS strategies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    type TEXT NOT NULL DEFAULT 'sma_crossover',
    parameters TEXT NOT NULL DEFAULT '{}',
    is_active INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS strategy_versions (
    strategy_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    parameters TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


class StrategyCreate(BaseModel):
    """A new strategy."""

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    type: str = "sma_crossover"
    parameters: dict[str, Any] = Field(default_factory=dict)


class StrategyUpdate(BaseModel):
    """Fields to change; each change of parameters makes a new version."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class StrategyStore:
    """sqlite persistence (one connection, serialised: the service is small)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock, self._db:
            return self._db.execute(sql, args).fetchall()

    def execute(self, sql: str, args: tuple = ()) -> int:
        with self._lock, self._db:
            return self._db.execute(sql, args).lastrowid or 0


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _public(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "type": row["type"],
        "parameters": json.loads(row["parameters"]),
        "is_active": bool(row["is_active"]),
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


router = APIRouter(prefix="/api/strategies/strategies", tags=["strategies"])


def _store(request: Request) -> StrategyStore:
    return request.app.state.strategies


def _get(request: Request, strategy_id: int) -> sqlite3.Row:
    rows = _store(request).query("SELECT * FROM strategies WHERE id = ?", (strategy_id,))
    if not rows:
        raise HTTPException(status_code=404, detail=f"Strategy {strategy_id} not found")
    return rows[0]


@router.get("/")
def list_strategies(request: Request) -> list[dict[str, Any]]:
    """All strategies (ordered by id; the list-order drift returns newest first)."""
    order = "DESC" if request.app.state.settings.has("list-order") else "ASC"
    rows = _store(request).query(f"SELECT * FROM strategies ORDER BY id {order}")
    return [_public(row) for row in rows]


@router.post("/", status_code=201)
def create_strategy(request: Request, body: StrategyCreate) -> dict[str, Any]:
    """Create a strategy (version 1)."""
    now = _now()
    params = json.dumps(body.parameters, sort_keys=True)
    store = _store(request)
    new_id = store.execute(
        "INSERT INTO strategies (name, description, type, parameters, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (body.name, body.description, body.type, params, now, now),
    )
    store.execute(
        "INSERT INTO strategy_versions VALUES (?, 1, ?, ?, ?)",
        (new_id, params, body.description, now),
    )
    return _public(_get(request, new_id))


@router.get("/{strategy_id}")
def get_strategy(request: Request, strategy_id: int) -> dict[str, Any]:
    """One strategy."""
    return _public(_get(request, strategy_id))


@router.put("/{strategy_id}")
def update_strategy(request: Request, strategy_id: int, body: StrategyUpdate) -> dict[str, Any]:
    """Change a strategy; new parameters make a new version."""
    row = _get(request, strategy_id)
    now = _now()
    name = body.name if body.name is not None else row["name"]
    description = body.description if body.description is not None else row["description"]
    params = json.dumps(body.parameters, sort_keys=True) if body.parameters is not None \
        else row["parameters"]
    version = row["version"] + (1 if params != row["parameters"] else 0)
    store = _store(request)
    store.execute(
        "UPDATE strategies SET name = ?, description = ?, parameters = ?, version = ?, "
        "updated_at = ? WHERE id = ?",
        (name, description, params, version, now, strategy_id),
    )
    if version != row["version"]:
        store.execute("INSERT INTO strategy_versions VALUES (?, ?, ?, ?, ?)",
                      (strategy_id, version, params, description, now))
    return _public(_get(request, strategy_id))


@router.delete("/{strategy_id}")
def delete_strategy(request: Request, strategy_id: int) -> dict[str, Any]:
    """Delete a strategy and its versions."""
    _get(request, strategy_id)
    _store(request).execute("DELETE FROM strategies WHERE id = ?", (strategy_id,))
    _store(request).execute("DELETE FROM strategy_versions WHERE strategy_id = ?", (strategy_id,))
    return {"id": strategy_id, "deleted": True}


def _set_active(request: Request, strategy_id: int, active: bool) -> dict[str, Any]:
    _get(request, strategy_id)
    _store(request).execute("UPDATE strategies SET is_active = ?, updated_at = ? WHERE id = ?",
                            (int(active), _now(), strategy_id))
    return _public(_get(request, strategy_id))


@router.post("/{strategy_id}/activate")
def activate(request: Request, strategy_id: int) -> dict[str, Any]:
    """Switch a strategy on."""
    return _set_active(request, strategy_id, True)


@router.post("/{strategy_id}/deactivate")
def deactivate(request: Request, strategy_id: int) -> dict[str, Any]:
    """Switch a strategy off."""
    return _set_active(request, strategy_id, False)


@router.get("/{strategy_id}/versions")
def versions(request: Request, strategy_id: int) -> list[dict[str, Any]]:
    """Every version of a strategy, oldest first."""
    _get(request, strategy_id)
    rows = _store(request).query(
        "SELECT * FROM strategy_versions WHERE strategy_id = ? ORDER BY version", (strategy_id,)
    )
    return [{"strategy_id": r["strategy_id"], "version": r["version"],
             "parameters": json.loads(r["parameters"]), "description": r["description"],
             "created_at": r["created_at"]} for r in rows]
