"""`[data]` of parity.toml: which tables are compared, by which key, in which migration group,
with which tolerances; and how the bisection is tuned.

    [data]
    segments = 16          # a differing segment is split into this many
    fetch_below = 256      # segments with at most this many rows are fetched and compared
    workers = 4            # queries in flight at once (both databases together)
    settle_s = 2.0         # wait before rechecking rows that changed during the run

    [data.tables.orders]
    key = ["id"]
    group = "trade"
    ignore = ["seq"]                      # columns not compared
    time = ["updated_at"]                 # normalised to UTC at the coarser precision
    updated = "updated_at"                # rows newer than the run's start are "in flight"
    tolerance = { price = { rtol = 1e-9, atol = 0.0 } }
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from harness.config import DEFAULT_NAME, _Checker, _read_toml
from harness.errors import UserError
from harness.routes import GROUPS

DATA_KEYS = {"segments", "fetch_below", "workers", "settle_s", "tables"}
TABLE_KEYS = {"key", "group", "ignore", "time", "updated", "tolerance"}
TOLERANCE_KEYS = {"rtol", "atol"}
# A float column without a configured tolerance: 1e-16 evaluation noise is not a finding, a float
# narrowed to float32 (~6e-8 relative) is. The comparators' default too.
DEFAULT_FLOAT_RTOL = 1e-9
UNCONFIGURED_GROUP = "other"


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far two numbers of a column may be apart: |a - b| <= atol + rtol * max(|a|, |b|)."""

    rtol: float = DEFAULT_FLOAT_RTOL
    atol: float = 0.0


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One compared table."""

    name: str
    key: tuple[str, ...]
    group: str = UNCONFIGURED_GROUP
    ignore: tuple[str, ...] = ()
    time: tuple[str, ...] = ()
    updated: str | None = None
    tolerance: dict[str, Tolerance] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DataSettings:
    """Everything `[data]` configures."""

    tables: dict[str, TableSpec] = field(default_factory=dict)
    segments: int = 16
    fetch_below: int = 256
    workers: int = 4
    settle_s: float = 2.0

    def only(self, selections: list[str]) -> DataSettings:
        """Restrict to `--table NAME[:KEY[,KEY...]]` selections (a table not configured is
        compared in group "other" with the given key)."""
        if not selections:
            return self
        chosen: dict[str, TableSpec] = {}
        for selection in selections:
            name, _, keys = selection.partition(":")
            name = name.strip()
            key = tuple(k.strip() for k in keys.split(",") if k.strip())
            if not name:
                raise UserError(f"--table {selection!r}: expected NAME or NAME:KEY[,KEY...]")
            spec = self.tables.get(name)
            if spec is None:
                if not key:
                    raise UserError(f"--table {name}: not in [data.tables]; give its key as "
                                    f"{name}:KEY")
                spec = TableSpec(name=name, key=key)
            elif key:
                spec = replace(spec, key=key)
            chosen[name] = spec
        return replace(self, tables=chosen)


def _table(check: _Checker, name: str, raw: Any) -> TableSpec:
    key = f"data.tables.{name}"
    table = check.table(raw, key, TABLE_KEYS)
    keys = check.strings(table.get("key", []), f"{key}.key")
    if not keys:
        raise check.fail(f"{key}.key", "a table needs at least one key column")
    group = table.get("group", UNCONFIGURED_GROUP)
    if group not in GROUPS:
        raise check.fail(f"{key}.group", f"unknown group {group!r} (known: {', '.join(GROUPS)})")
    updated = table.get("updated")
    if updated is not None and not isinstance(updated, str):
        raise check.fail(f"{key}.updated", f"expected a column name, got {updated!r}")
    tolerances = {}
    for column, spec in check.table(table.get("tolerance", {}), f"{key}.tolerance",
                                    set(table.get("tolerance", {}))).items():
        where = f"{key}.tolerance.{column}"
        spec = check.table(spec, where, TOLERANCE_KEYS)
        tolerances[column] = Tolerance(
            rtol=check.number(spec.get("rtol", 0.0), f"{where}.rtol", high=1.0),
            atol=check.number(spec.get("atol", 0.0), f"{where}.atol"),
        )
    return TableSpec(
        name=name, key=keys, group=group,
        ignore=check.strings(table.get("ignore", []), f"{key}.ignore"),
        time=check.strings(table.get("time", []), f"{key}.time"),
        updated=updated, tolerance=tolerances,
    )


def build_data_settings(defaults: dict[str, Any], user: dict[str, Any] | None,
                        source: str) -> DataSettings:
    """`[data]` of the shipped defaults overridden by a user's (a user's table replaces the
    default table of the same name)."""
    check = _Checker(source)
    base = _Checker("<defaults>").table(defaults.get("data", {}), "data", DATA_KEYS)
    mine = check.table((user or {}).get("data", {}), "data", DATA_KEYS)
    tables = {name: _table(_Checker("<defaults>"), name, raw)
              for name, raw in base.get("tables", {}).items()}
    user_tables = check.table(mine.get("tables", {}), "data.tables", set(mine.get("tables", {})))
    tables.update({name: _table(check, name, raw) for name, raw in user_tables.items()})
    merged = {**base, **mine}
    return DataSettings(
        tables=tables,
        segments=max(2, check.integer(merged.get("segments", 16), "data.segments", low=2)),
        fetch_below=check.integer(merged.get("fetch_below", 256), "data.fetch_below", low=1),
        workers=check.integer(merged.get("workers", 4), "data.workers", low=1),
        settle_s=check.number(merged.get("settle_s", 2.0), "data.settle_s", high=600.0),
    )


def load_data_settings(path: str | Path | None = None) -> DataSettings:
    """The shipped `[data]` defaults, overridden by the parity.toml at `path` when given."""
    text = resources.files("harness").joinpath(DEFAULT_NAME).read_text(encoding="utf-8")
    defaults = tomllib.loads(text)
    if path is None:
        return build_data_settings(defaults, None, "<defaults>")
    source = str(path)
    return build_data_settings(defaults, _read_toml(Path(path), source), source)
