"""The bisection driver: per table, checksums of key segments computed inside both databases
(concurrently), differing segments split and compared again, small ones fetched and compared row
by row; rows that changed during the run rechecked after a settle delay.

A first checksum covers the whole table, so identical tables cost one scan per side (run side by
side); only differing tables are split, `segments` ways per level, until a segment holds at most
`fetch_below` rows on both sides.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import types as sat

from harness.datastate.columns import (
    HASH_MOD,
    NULL_MARK,
    ColumnPlan,
    Unsupported,
    as_utc_text,
    fraction_digits,
    key_text,
    pg_canonical,
    pg_row_hash,
    plan_column,
    side_kind,
)
from harness.datastate.database import Database, TableInfo
from harness.datastate.findings import DataStateResult, RowFinding, TableState
from harness.datastate.settings import DataSettings, TableSpec
from harness.diff.values import number_message, show, within
from harness.model import Difference, Kind, Severity

Bound = tuple[Any, ...] | None
Rows = dict[tuple[Any, ...], tuple[Any, ...]]  # key → canonical values, raw values, update time
P = ParamSpec("P")
T = TypeVar("T")
TIME_SAMPLE = 200
MAX_FIRST_SPLIT = 256


@dataclass(frozen=True, slots=True)
class Segment:
    """Keys from `lo` (inclusive) to `hi` (exclusive); None is open."""

    lo: Bound
    hi: Bound


@dataclass(frozen=True, slots=True)
class Checksum:
    count: int
    total: int
    low: Any = None
    high: Any = None

    def same(self, other: Checksum) -> bool:
        return self.count == other.count and self.total == other.total


class Side:
    """The queries of one table on one database."""

    def __init__(self, db: Database, info: TableInfo, keys: list[ColumnPlan],
                 columns: list[ColumnPlan], updated: str | None) -> None:
        self.db, self.info = db, info
        self.keys, self.columns = keys, columns
        self.table = db.qualified(info)
        self.pg = db.dialect == "postgresql"
        self.updated = updated if updated in info.columns else None
        self.key_sql = [self._key(plan.name) for plan in keys]
        plans = keys + columns
        if self.pg:
            self.canon = [pg_canonical(db.quote(p.name), p, info.columns[p.name]) for p in plans]
            self.hash_sql = f"coalesce(sum({pg_row_hash(self.canon)}), 0)"
        else:
            self.canon = [f"parity_canon('{p.code}', {db.quote(p.name)})" for p in plans]
            codes = "|".join(p.code for p in plans)
            names = ", ".join(db.quote(p.name) for p in plans)
            self.hash_sql = f"parity_checksum('{codes}', {names})"

    def _key(self, name: str) -> str:
        quoted = self.db.quote(name)
        sqltype = self.info.columns[name]
        text_key = self.pg and isinstance(sqltype, sat.String | sat.Text)
        # C collation: PostgreSQL then orders text keys byte-wise, as sqlite does, so both sides
        # cut segments at the same places.
        return f"{quoted} COLLATE \"C\"" if text_key else quoted

    def where(self, segment: Segment) -> tuple[str, dict[str, Any]]:
        clauses: list[str] = []
        params: dict[str, Any] = {}
        keys = self.key_sql[0] if len(self.key_sql) == 1 else f"({', '.join(self.key_sql)})"
        for bound, op, prefix in ((segment.lo, ">=", "lo"), (segment.hi, "<", "hi")):
            if bound is None:
                continue
            names = [f"{prefix}{i}" for i in range(len(bound))]
            params.update(zip(names, (key_text(v) for v in bound), strict=True))
            values = f":{names[0]}" if len(names) == 1 else \
                f"({', '.join(':' + n for n in names)})"
            clauses.append(f"{keys} {op} {values}")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def checksum(self, segment: Segment, with_range: bool) -> Checksum:
        where, params = self.where(segment)
        extra = f", min({self.key_sql[0]}), max({self.key_sql[0]})" if with_range else ""
        row = self.db.run(f"SELECT count(*), {self.hash_sql}{extra} FROM {self.table}{where}",
                          params)[0]
        total = int(row[1]) % HASH_MOD
        return Checksum(int(row[0]), total, *(row[2:4] if with_range else ()))

    def quantiles(self, segment: Segment, count: int, parts: int) -> list[tuple[Any, ...]]:
        where, params = self.where(segment)
        keys = ", ".join(self.db.quote(p.name) for p in self.keys)
        order = ", ".join(self.key_sql)
        params.update(step=max(1, math.ceil(count / parts)), parts=parts - 1)
        rows = self.db.run(
            f"SELECT {keys} FROM (SELECT {keys}, row_number() OVER (ORDER BY {order}) AS rn "
            f"FROM {self.table}{where}) AS q WHERE rn % :step = 0 ORDER BY rn LIMIT :parts",
            params)
        return [tuple(key_text(v) for v in row) for row in rows]

    def fetch(self, where: str, params: dict[str, Any]) -> Rows:
        names = [self.db.quote(p.name) for p in self.keys]
        raw = [self.db.quote(p.name) for p in self.columns]
        updated = [self.db.quote(self.updated)] if self.updated else ["NULL"]
        select = ", ".join([*names, *self.canon[len(self.keys):], *raw, *updated])
        rows = self.db.run(f"SELECT {select} FROM {self.table}{where}", params)
        self.db.fetched(len(rows))
        k = len(self.keys)
        return {tuple(key_text(v) for v in row[:k]): row[k:] for row in rows}

    def fetch_segment(self, segment: Segment) -> Rows:
        return self.fetch(*self.where(segment))

    def fetch_keys(self, key: tuple[Any, ...]) -> Rows:
        clauses = " AND ".join(f"{sql} = :k{i}" for i, sql in enumerate(self.key_sql))
        return self.fetch(f" WHERE {clauses}", {f"k{i}": v for i, v in enumerate(key)})

    def duplicate_key(self) -> bool:
        keys = ", ".join(self.db.quote(p.name) for p in self.keys)
        return bool(self.db.run(f"SELECT 1 FROM {self.table} GROUP BY {keys} "
                                "HAVING count(*) > 1 LIMIT 1"))

    def time_precision(self, name: str) -> int:
        sqltype = self.info.columns[name]
        if self.pg and side_kind(sqltype, "postgresql") == "ts":
            rows = self.db.run(
                "SELECT datetime_precision FROM information_schema.columns WHERE "
                "table_schema = coalesce(:schema, current_schema()) AND table_name = :table "
                "AND column_name = :column",
                {"schema": self.info.schema, "table": self.info.name, "column": name})
            return int(rows[0][0]) if rows and rows[0][0] is not None else 6
        column = self.db.quote(name)
        values = self.db.run(f"SELECT {column} FROM {self.table} WHERE {column} IS NOT NULL "
                             f"LIMIT {TIME_SAMPLE}")
        digits = [d for (v,) in values if (d := fraction_digits(v)) is not None]
        return max(digits, default=6)


class TableDiff:
    """Compares one table; fills a TableState."""

    def __init__(self, spec: TableSpec, state: TableState, primary: Side, candidate: Side,
                 settings: DataSettings, pool: ThreadPoolExecutor, since: str,
                 reverse: bool) -> None:
        self.spec, self.state, self.settings, self.pool = spec, state, settings, pool
        self.primary, self.candidate = primary, candidate
        self.since, self.reverse = since, reverse
        self.suspects: list[tuple[Any, ...]] = []
        self.arithmetic = (len(primary.keys) == 1 and primary.keys[0].kind == "int")
        self.range = (Checksum(0, 0), Checksum(0, 0))  # whole table: min/max of an integer key

    def both(self, call: Callable[Concatenate[Side, P], T], *args: P.args,
             **kwargs: P.kwargs) -> tuple[Future[T], Future[T]]:
        """`call(side, *args, **kwargs)` on each side, in the pool."""
        return (self.pool.submit(call, self.primary, *args, **kwargs),
                self.pool.submit(call, self.candidate, *args, **kwargs))

    def run(self) -> None:
        pending = [Segment(None, None)]
        first = True
        while pending:
            ranged = first and self.arithmetic  # min/max of an integer key, for splitting
            futures = [self.both(Side.checksum, s, ranged) for s in pending]
            fetch: list[Segment] = []
            splits: list[Future[list[Segment]]] = []
            for segment, (fp, fc) in zip(pending, futures, strict=True):
                p, c = fp.result(), fc.result()
                if first:
                    self.state.rows = {"primary": p.count, "candidate": c.count}
                    self.range = (p, c)
                if p.same(c):
                    continue
                if max(p.count, c.count) <= self.settings.fetch_below:
                    fetch.append(segment)
                else:
                    splits.append(self.pool.submit(self.split, segment, p, c))
            first = False
            pending = []
            for segment_future in splits:
                parts = segment_future.result()
                (pending if len(parts) > 1 else fetch).extend(parts)
            # A few segments at a time: memory stays within workers × fetch_below rows per side,
            # whatever the table's size or the number of differing segments.
            for start in range(0, len(fetch), self.settings.workers):
                batch = [self.both(Side.fetch_segment, s)
                         for s in fetch[start:start + self.settings.workers]]
                for p_rows, c_rows in batch:
                    self.compare_rows(p_rows.result(), c_rows.result())

    def split(self, segment: Segment, p: Checksum, c: Checksum) -> list[Segment]:
        parts = self.settings.segments
        if segment.lo is None and segment.hi is None:
            # The whole table differs: cut it straight into segments that one more split brings
            # under fetch_below, so the big middle levels (full rescans) are skipped.
            wanted = max(p.count, c.count) // (self.settings.fetch_below * parts)
            parts = min(MAX_FIRST_SPLIT, max(parts, wanted))
        if self.arithmetic:
            lows = [v for v in (self.range[0].low, self.range[1].low) if v is not None]
            highs = [v for v in (self.range[0].high, self.range[1].high) if v is not None]
            lo = segment.lo[0] if segment.lo else min(lows)
            hi = segment.hi[0] if segment.hi else max(highs) + 1
            if hi - lo <= 1:
                return [segment]
            step = max(1, math.ceil((hi - lo) / parts))
            cuts = [(cut,) for cut in range(lo + step, hi, step)]
        else:
            side = self.primary if p.count >= c.count else self.candidate
            cuts = side.quantiles(segment, max(p.count, c.count), parts)
        bounds: list[Bound] = [segment.lo, *cuts, segment.hi]
        return [Segment(a, b) for a, b in itertools.pairwise(bounds)
                if a is None or b is None or a != b]

    def compare_rows(self, p_rows: Rows, c_rows: Rows, *, recheck: bool = False) -> None:
        source, target = (c_rows, p_rows) if self.reverse else (p_rows, c_rows)
        width = len(self.primary.columns)
        keys = source.keys() | target.keys()
        try:
            ordered = sorted(keys)
        except TypeError:  # keys of mixed types (sqlite allows it): any order
            ordered = list(keys)
        for key in ordered:
            s_row, t_row = source.get(key), target.get(key)
            if t_row is None:
                finding = RowFinding("missing", self.key_dict(key))
            elif s_row is None:
                finding = RowFinding("extra", self.key_dict(key))
            else:
                p_row, c_row = (t_row, s_row) if self.reverse else (s_row, t_row)
                differences = self.column_differences(p_row, c_row, width)
                if not differences:
                    continue
                finding = RowFinding("differing", self.key_dict(key), differences)
            if recheck:
                finding.kind = "in-flight"
            elif self.in_flight(s_row if s_row is not None else t_row):
                self.suspects.append(key)
                continue
            self.state.add(finding)

    def in_flight(self, row: tuple[Any, ...] | None) -> bool:
        if row is None:  # a key is on one side at least
            return False
        stamp = row[-1]
        return stamp is not None and as_utc_text(stamp, 6) >= self.since

    def key_dict(self, key: tuple[Any, ...]) -> dict[str, Any]:
        return {plan.name: value for plan, value in zip(self.primary.keys, key, strict=True)}

    def column_differences(self, p_row: tuple[Any, ...], c_row: tuple[Any, ...],
                           width: int) -> list[Difference]:
        out = []
        for i, plan in enumerate(self.primary.columns):
            p_canon, c_canon = p_row[i], c_row[i]
            if p_canon == c_canon:
                continue
            p, c = p_row[width + i], c_row[width + i]
            path = f"{self.spec.name}.{plan.name}"
            message = describe(path, plan, p, c, p_canon, c_canon)
            if message is None:
                continue
            kind = Kind.TYPE if (p is None) != (c is None) else Kind.CHANGED
            out.append(Difference(path, kind, p, c, message, Severity.CRITICAL))
        return out

    def recheck(self) -> None:
        for key in self.suspects:
            fp, fc = self.both(Side.fetch_keys, key)
            self.compare_rows(fp.result(), fc.result(), recheck=True)


def describe(path: str, plan: ColumnPlan, p: Any, c: Any, p_canon: str,
             c_canon: str) -> str | None:
    """The message of a column difference, like the comparators'; None when within tolerance."""
    if (p is None) != (c is None) and "" in (p, c):
        return f"{path} {'NULL vs empty string' if p is None else 'empty string vs NULL'}"
    if plan.kind == "float" and p is not None and c is not None:
        try:
            a, b = float(p), float(c)
        except (TypeError, ValueError):
            return f"{path} {show(p)} vs {show(c)} (not a number)"
        if within(a, b, plan.rtol, plan.atol):
            return None
        return number_message(path, a, b, plan.rtol, plan.atol)
    if plan.kind == "ts" and NULL_MARK not in (p_canon, c_canon):
        if p_canon.startswith("!") or c_canon.startswith("!"):
            return f"{path} {show(plain_text(p))} vs {show(plain_text(c))} (not a timestamp)"
        try:
            delta = datetime.fromisoformat(c_canon) - datetime.fromisoformat(p_canon)
            shift = f"{delta.total_seconds():+g} s in UTC"
        except ValueError:
            shift = f"UTC {p_canon} vs {c_canon}"
        return f"{path} {show(plain_text(p))} vs {show(plain_text(c))} ({shift})"
    return f"{path} {show(plain_text(p))} vs {show(plain_text(c))}"


def plain_text(value: Any) -> Any:
    """Values as messages show them."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value if value is None or isinstance(value, int | float | str) else str(value)


def _prepare(spec: TableSpec, state: TableState, primary: Database, candidate: Database,
             reverse: bool) -> tuple[Side, Side] | None:
    """Both sides of a table, or None after recording why it cannot be compared."""
    infos = (primary.find_table(spec.name), candidate.find_table(spec.name))
    if infos == (None, None):
        state.status = "absent"
        state.reasons.append("on neither side")
        return None
    for info, side in zip(infos, ("primary", "candidate"), strict=True):
        if info is None:
            state.problem("schema", f"{spec.name}: table missing on the {side}")
    if None in infos:
        return None
    p_info, c_info = infos
    assert p_info is not None and c_info is not None
    for info, side in ((p_info, "primary"), (c_info, "candidate")):
        missing = [k for k in spec.key if k not in info.columns]
        if missing:
            state.problem("incomparable",
                          f"{spec.name}: key column {missing[0]} not on the {side}")
            return None
    dialects = (primary.dialect, candidate.dialect)
    compared = [c for c in p_info.columns
                if c in c_info.columns and c not in spec.key and c not in spec.ignore]
    for info, other, side in ((p_info, c_info, "candidate"), (c_info, p_info, "primary")):
        for column in info.columns:
            if column not in other.columns and column not in spec.ignore:
                state.problem("schema", f"{spec.name}.{column}: column missing on the {side}")
    try:
        keys = [plan_column(k, p_info.columns[k], c_info.columns[k], dialects, time=False,
                            tolerance=None) for k in spec.key]
        plans = []
        for name in compared:
            tol = spec.tolerance.get(name)
            plans.append(plan_column(name, p_info.columns[name], c_info.columns[name], dialects,
                                     time=name in spec.time,
                                     tolerance=(tol.rtol, tol.atol) if tol else None))
    except Unsupported as exc:
        state.problem("incomparable", f"{spec.name}: {exc}")
        return None
    if any(k.kind == "float" for k in keys):
        state.problem("incomparable", f"{spec.name}: a float key cannot identify rows")
        return None
    sides = [Side(db, info, keys, plans, spec.updated)
             for db, info in ((primary, p_info), (candidate, c_info))]
    # Times are compared at the coarser precision of the two sides.
    for i, plan in enumerate(plans):
        if plan.kind == "ts":
            precision = min(side.time_precision(plan.name) for side in sides)
            plans[i] = ColumnPlan(plan.name, "ts", precision=precision)
    sides = [Side(db, info, keys, plans, spec.updated)
             for db, info in ((primary, p_info), (candidate, c_info))]
    for table_side, info in zip(sides, infos, strict=True):
        assert info is not None
        if not any(set(unique) <= set(spec.key) for unique in info.unique_keys) \
                and table_side.duplicate_key():
            state.problem("incomparable", f"{spec.name}: key ({', '.join(spec.key)}) is not "
                                          f"unique on the {table_side.db.side}")
            return None
    return sides[0], sides[1]


def compare_databases(primary_url: str, candidate_url: str, settings: DataSettings, *,
                      reverse: bool = False, since: datetime | None = None,
                      settle_s: float | None = None) -> DataStateResult:
    """Compare every table of `settings` between the two databases (UserError on a bad URL or a
    connection failure). `reverse`: the candidate is the source (rows missing on the primary)."""
    started = time.perf_counter()
    start = since or datetime.now(UTC)
    since_text = as_utc_text(start, 6)
    pool_size = settings.workers
    primary = Database(primary_url, "primary", pool_size=pool_size)
    try:
        candidate = Database(candidate_url, "candidate", pool_size=pool_size)
    except BaseException:
        primary.close()
        raise
    result = DataStateResult(primary.shown, candidate.shown, reverse, since_text)
    diffs: list[TableDiff] = []
    try:
        with ThreadPoolExecutor(max_workers=settings.workers) as pool:
            for spec in settings.tables.values():
                state = TableState(spec.name, spec.group,
                                   target="primary" if reverse else "candidate")
                result.tables.append(state)
                before = (primary.queries + candidate.queries,
                          primary.rows_fetched + candidate.rows_fetched)
                table_started = time.perf_counter()
                sides = _prepare(spec, state, primary, candidate, reverse)
                if sides is not None:
                    diff = TableDiff(spec, state, *sides, settings, pool, since_text, reverse)
                    try:
                        diff.run()
                    except (TypeError, ValueError, ArithmeticError) as exc:
                        # e.g. sqlite values of mixed types in an integer key column
                        state.problem("incomparable", f"{spec.name}: cannot bisect its key "
                                                      f"({type(exc).__name__}: {exc})")
                    diffs.append(diff)
                state.queries = primary.queries + candidate.queries - before[0]
                state.rows_fetched = primary.rows_fetched + candidate.rows_fetched - before[1]
                state.seconds = time.perf_counter() - table_started
            if any(diff.suspects for diff in diffs):
                time.sleep(settings.settle_s if settle_s is None else settle_s)
                for diff in diffs:
                    diff.recheck()
    finally:
        result.queries = primary.queries + candidate.queries
        result.rows_fetched = primary.rows_fetched + candidate.rows_fetched
        primary.close()
        candidate.close()
    result.seconds = time.perf_counter() - started
    return result
