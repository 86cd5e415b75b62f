"""Normalisation: every compared value becomes a canonical text, identical on every engine for the
same data, so a row hash computed inside sqlite equals the one computed inside PostgreSQL.

| kind  | canonical text                                            | from                      |
|-------|-----------------------------------------------------------|---------------------------|
| text  | the text                                                  | text, varchar, uuid, json |
| int   | decimal digits; booleans as 1 / 0                         | integer types, boolean    |
| dec   | the decimal without trailing zeros (1.50 → 1.5)           | numeric / decimal         |
| float | a tolerance bucket `e:n` (see below)                      | real, double; tolerance   |
| ts    | UTC `YYYY-MM-DD HH:MM:SS[.f]` cut to the coarser          | timestamp(tz); a text     |
|       | precision of the two sides; naive values taken as UTC     | column listed in `time`   |
| bytes | lower-case hex                                            | blob, bytea               |
NULL is `\\N`, never the empty string, so NULL vs "" is a difference (reported as such).

Why tolerance columns are *bucketed* in the checksum and then compared *row-wise*: leaving them
out of the checksum would hide a float32 narrowing in every segment where nothing else differs
(it would never be fetched); an exact checksum would report 1e-16 noise. A bucket of width w ≤ the
tolerance (`e = floor(log10|x|)`, `w = max(atol, rtol·10^e)`, bucket `e:floor(x / w)`) puts any
two values more than the tolerance apart in different buckets, so no real difference escapes the
checksum; values within the tolerance that straddle a bucket edge only cost a fetch of that small
segment, where the row-wise comparison (`within`) clears them. No false finding, no miss.
"""

from __future__ import annotations

import hashlib
import math
import re
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from sqlalchemy import types as sat

SqlType = sat.TypeEngine[Any]  # a column's type as SQLAlchemy reflects it

NULL_MARK = "\\N"
SEPARATOR = "\x1f"
HASH_MOD = 1 << 64
# Buckets never finer than double precision can tell apart (keeps floor(x / w) in a bigint).
MIN_RELATIVE_WIDTH = 1e-15
TRUNC_UNITS = {0: "second", 3: "milliseconds"}


class Unsupported(Exception):
    """A column whose type cannot be normalised (the table is reported incomparable)."""


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """How one column is normalised on both sides."""

    name: str
    kind: str  # text | int | dec | float | ts | bytes
    rtol: float = 0.0
    atol: float = 0.0
    precision: int = 6  # fractional digits of seconds kept for ts

    @property
    def code(self) -> str:
        """The plan as a short string (what the sqlite functions receive)."""
        if self.kind == "float":
            return f"float:{self.rtol!r}:{self.atol!r}"
        if self.kind == "ts":
            return f"ts:{self.precision}"
        return self.kind


def side_kind(sqltype: SqlType, dialect: str) -> str | None:
    """The kind one side's column type normalises as (None: cannot be normalised)."""
    checks: tuple[tuple[type, str], ...] = (
        (sat.Boolean, "bool"), (sat.Integer, "int"), (sat.Float, "float"),
        (sat.Numeric, "dec"), (sat.DateTime, "ts"), (sat.Date, "ts"),
        (sat._Binary, "bytes"), (sat.Uuid, "text"), (sat.JSON, "text"), (sat.String, "text"),
    )
    for cls, kind in checks:
        if isinstance(sqltype, cls):
            return kind
    if dialect == "sqlite" and isinstance(sqltype, sat.NullType):
        return "text"  # a column declared without a type
    return None


def _kind(name: str, sqltype: SqlType, dialect: str, side: str) -> str:
    kind = side_kind(sqltype, dialect)
    if kind is None:
        raise Unsupported(f"column {name}: type {sqltype} on the {side} cannot be normalised")
    return kind


def plan_column(name: str, primary: SqlType, candidate: SqlType, dialects: tuple[str, str], *,
                time: bool, tolerance: tuple[float, float] | None) -> ColumnPlan:
    """The common normalisation of a column typed `primary` on one side and `candidate` on the
    other; Unsupported (with the reason) when there is none."""
    kinds = (_kind(name, primary, dialects[0], "primary"),
             _kind(name, candidate, dialects[1], "candidate"))
    found = set(kinds)
    if time or "ts" in found:
        if found <= {"ts", "text"}:
            return ColumnPlan(name, "ts")
    elif tolerance is not None or "float" in found:
        if found <= {"int", "bool", "dec", "float"}:
            rtol, atol = tolerance if tolerance is not None else (1e-9, 0.0)
            return ColumnPlan(name, "float", rtol=rtol, atol=atol)
    elif found <= {"int", "bool"}:
        return ColumnPlan(name, "int")
    elif found <= {"int", "dec"}:
        return ColumnPlan(name, "dec")
    elif len(found) == 1:
        return ColumnPlan(name, kinds[0])  # text or bytes
    raise Unsupported(f"column {name}: {kinds[0]} on the primary vs {kinds[1]} on the candidate")


# --- in Python (sqlite's functions, and the bucket a test can check) --------------------------


def bucket(x: float, rtol: float, atol: float) -> str:
    """The tolerance bucket of a number (see the module docstring)."""
    if x == 0:
        return "0"
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    exponent = math.floor(math.log10(abs(x)))
    width = max(atol, max(rtol, MIN_RELATIVE_WIDTH) * 10.0 ** exponent)
    return f"{exponent}:{math.floor(x / width)}"


_FRACTION = re.compile(r"[T ]\d\d:\d\d:\d\d\.(\d+)")


def fraction_digits(value: Any) -> int | None:
    """Fractional-second digits written in a time text (None for other values)."""
    if not isinstance(value, str):
        return None
    match = _FRACTION.search(value)
    return len(match.group(1)) if match else 0


def as_utc_text(value: Any, precision: int) -> str:
    """A time value as canonical UTC text; a text that is not a time gets a `!` prefix (so it
    differs from every real time and is shown as such)."""
    try:
        if isinstance(value, str):
            moment = datetime.fromisoformat(value.strip())
        elif isinstance(value, datetime):
            moment = value
        elif isinstance(value, date):
            moment = datetime(value.year, value.month, value.day)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(value, UTC)
        else:
            return f"!{value}"
    except (ValueError, OverflowError, OSError):
        return f"!{value}"
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    micro = moment.microsecond - moment.microsecond % 10 ** (6 - min(max(precision, 0), 6))
    # PostgreSQL's own text of a timestamp (cheaper in SQL than to_char): fraction without
    # trailing zeros, none when zero.
    fraction = f".{micro:06d}".rstrip("0") if micro else ""
    return moment.strftime("%Y-%m-%d %H:%M:%S") + fraction


def canonical(value: Any, kind: str, rtol: float = 0.0, atol: float = 0.0,
              precision: int = 6) -> str:
    """One value's canonical text (the Python twin of `pg_canonical`)."""
    if value is None:
        return NULL_MARK
    if kind == "text":
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(int(value)) if isinstance(value, bool | int) else str(value)
    if kind == "dec":
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return f"!{value}"
        return "0" if number == 0 else format(number.normalize(), "f")
    if kind == "float":
        try:
            return bucket(float(value), rtol, atol)
        except (TypeError, ValueError):
            return f"!{value}"
    if kind == "ts":
        return as_utc_text(value, precision)
    if kind == "bytes":
        return bytes(value).hex() if isinstance(value, bytes | bytearray | memoryview) \
            else str(value).encode().hex()
    raise ValueError(f"unknown kind {kind!r}")


@lru_cache(maxsize=256)
def parse_code(code: str) -> tuple[str, float, float, int]:
    """A `ColumnPlan.code` back into (kind, rtol, atol, precision)."""
    kind, *rest = code.split(":")
    if kind == "float":
        return kind, float(rest[0]), float(rest[1]), 6
    if kind == "ts":
        return kind, 0.0, 0.0, int(rest[0])
    return kind, 0.0, 0.0, 6


def row_hash(texts: list[str]) -> int:
    """The signed 64-bit hash of a row's canonical texts (as PostgreSQL computes it)."""
    digest = hashlib.md5(SEPARATOR.join(texts).encode("utf-8"), usedforsecurity=False)
    value = int(digest.hexdigest()[:16], 16)
    return value - HASH_MOD if value >= 1 << 63 else value


def sqlite_canonical(code: str, value: Any) -> str:
    """sqlite function `parity_canon(code, value)`."""
    return canonical(value, *parse_code(code))


class SqliteChecksum:
    """sqlite aggregate `parity_checksum(codes, v1, v2, ...)`: the sum of row hashes mod 2^64,
    as text (codes: the column plans' codes joined by `|`)."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, codes: str, *values: Any) -> None:
        plans = _codes(codes)
        self.total += row_hash([canonical(v, *p) for v, p in zip(values, plans, strict=True)])

    def finalize(self) -> str:
        return str(self.total % HASH_MOD)


@lru_cache(maxsize=64)
def _codes(codes: str) -> tuple[tuple[str, float, float, int], ...]:
    return tuple(parse_code(code) for code in codes.split("|"))


def register_sqlite_functions(connection: sqlite3.Connection) -> None:
    """Make the normalisation available inside a sqlite connection."""
    connection.create_function("parity_canon", 2, sqlite_canonical, deterministic=True)
    # typeshed allows only one-int-argument aggregates returning int; sqlite takes any arguments
    # (-1: a variable number) and results.
    connection.create_aggregate("parity_checksum", -1, SqliteChecksum)  # type: ignore[arg-type]


# --- in PostgreSQL ----------------------------------------------------------------------------


def pg_canonical(column_sql: str, plan: ColumnPlan, sqltype: SqlType) -> str:
    """SQL computing the canonical text of `column_sql` (of type `sqltype`) in PostgreSQL; the
    session runs in UTC, so a time text without a zone is read as UTC."""
    c = column_sql
    own = side_kind(sqltype, "postgresql")
    if plan.kind == "text":
        expr = f"{c}::text"
    elif plan.kind == "int":
        expr = f"CASE WHEN {c} THEN '1' ELSE '0' END" if own == "bool" else f"{c}::text"
    elif plan.kind == "dec":
        expr = f"trim_scale({c}::numeric)::text"
    elif plan.kind == "bytes":
        expr = f"encode({c}, 'hex')"
    elif plan.kind == "float":
        x = f"({c})::float8" if own != "bool" else f"({c})::int::float8"
        e = f"floor(log(abs({x})))"
        relative = max(plan.rtol, MIN_RELATIVE_WIDTH)  # as `bucket`, with one power() less
        width = f"greatest({plan.atol!r}::float8, {relative!r}::float8 * power(10::float8, {e}))"
        expr = (f"CASE WHEN {x} = 0 THEN '0' WHEN {x} = 'NaN'::float8 THEN 'nan' "
                f"WHEN {x} = 'Infinity'::float8 THEN 'inf' "
                f"WHEN {x} = '-Infinity'::float8 THEN '-inf' "
                f"ELSE {e}::bigint::text || ':' || floor({x} / {width})::bigint::text END")
    elif plan.kind == "ts":
        # The session runs in UTC: a timestamptz cast to timestamp is its UTC wall time.
        if isinstance(sqltype, sat.DateTime | sat.Date):
            moment = f"{c}::timestamp"
        else:
            moment = f"{c}::timestamptz::timestamp"
        if plan.precision >= 6:
            expr = f"{moment}::text"
        elif plan.precision in TRUNC_UNITS:
            expr = f"date_trunc('{TRUNC_UNITS[plan.precision]}', {moment})::text"
        else:
            cut = 10 ** (6 - plan.precision)
            expr = (f"({moment} - (extract(microseconds from {moment})::bigint % {cut}) "
                    "* interval '1 microsecond')::text")
    else:
        raise ValueError(f"unknown kind {plan.kind!r}")
    return f"coalesce({expr}, '{NULL_MARK}')"


def pg_row_hash(expressions: list[str]) -> str:
    """SQL of the signed 64-bit hash of a row's canonical texts (same as `row_hash`)."""
    joined = " || chr(31) || ".join(expressions)
    return f"('x' || left(md5({joined}), 16))::bit(64)::bigint"


def key_text(value: Any) -> Any:
    """A key value as both engines' rows are matched by (uuid → text)."""
    return str(value) if isinstance(value, uuid.UUID) else value
