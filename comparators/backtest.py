"""The `backtest` comparator: backtest start/status/results, performance, optimize and
walk-forward answers, recognised by their shape, not their route.

- Metrics (any number) within a per-field tolerance: default rtol 1e-9, atol 1e-12, the route's
  ``rtol``/``atol`` over that, ``extra["tolerances"]`` per field or path glob over both
  (``{"sharpe_ratio": {"rtol": 1e-6}}``). Counts (``total_trades``, ``*_trades``, ``num_*``,
  ``*_count``, ``fold_number``) are exact; null is never 0.
- Equity curves (any list of numbers, or of ``{timestamp, equity, ...}`` points) are compared as
  arrays with numpy: one difference per column at the first index outside tolerance, with the
  largest deviations; a length difference is named; the points' timestamps are compared too (a
  constant shift is one difference).
- Trade lists are tables aligned on entry time, symbol and side, not on position;
  prices, amounts, fees and pnl within tolerance, one difference per column; missing and extra
  trades are named. Their order is not compared unless ``extra["trade_order"]`` is true.
- Optimization results are matched by their parameter set, walk-forward folds by fold number.
- Ignored by default: ids (``id``, ``backtest_id``, ``optimization_id``, ``walk_forward_id``,
  ...) and run timestamps (``created_at``, ``started_at``, ``completed_at``, ..., and the run's
  own ``start_time``/``end_time``); the data period (``start_date``/``end_date``) is compared.
"""

from __future__ import annotations

import json
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, cast

import orjson

from harness.diff import paths
from harness.diff.base import CompareOptions, Lifted, register
from harness.diff.paths import PathMatcher, matcher
from harness.diff.values import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    as_number,
    best_shift,
    column_difference,
    columns_if_same_members,
    compare_answers,
    compare_column_table,
    compare_columns,
    compare_scalar,
    compare_time_column,
    field_tolerance,
    generic_bodies,
    is_number,
    member_difference,
    near_pairs,
    number_message,
    numbers_or_nulls,
    shift_difference,
    show,
    time_key,
    time_keys,
    to_epoch,
    with_ignored,
    within,
)
from harness.model import Difference, Kind

IDS = (
    "id",
    "backtest_id",
    "optimization_id",
    "walk_forward_id",
    "task_id",
    "job_id",
    "run_id",
    "trade_id",
    "order_id",
)
RUN_TIMESTAMPS = (
    "created_at",
    "updated_at",
    "started_at",
    "completed_at",
    "finished_at",
    "submitted_at",
    "queued_at",
    "duration_seconds",
    "elapsed_seconds",
    "execution_time",
)
# The run's own start/end (BacktestResult.start_time/end_time), not the data period.
TOP_LEVEL_RUN_TIMES = ("start_time", "end_time")
DEFAULT_IGNORE = (
    *(f"**.{name}" for name in IDS + RUN_TIMESTAMPS),
    *TOP_LEVEL_RUN_TIMES,
)

COUNT = re.compile(r"^(total_trades|.*_trades|num_.*|n_.*|.*_count|fold_number|num_folds)$")
TIME_FIELDS = ("timestamp", "time", "datetime", "date", "ts", "t")
TRADE_TIME_FIELDS = ("entry_time", "open_time", "entry_timestamp", "timestamp", "time", "date")
TRADE_LISTS = ("trades", "trade_list", "trade_history", "closed_trades")
SHOWN = 3


@register("backtest", identical_is_match=True)
def compare_backtest(
    primary: Lifted, candidate: Lifted, options: CompareOptions
) -> list[Difference]:
    """Compare two backtest-service answers (see the module docstring)."""
    return compare_answers(primary, candidate, with_ignored(options, DEFAULT_IGNORE), _bodies)


def _bodies(primary: Lifted, candidate: Lifted, options: CompareOptions) -> list[Difference]:
    return BacktestDiff(options).walk("", primary.body, candidate.body, "")


VOLATILE = frozenset(IDS + RUN_TIMESTAMPS)


@lru_cache(maxsize=256)  # a route's ignore globs are the same exchange after exchange
def _route_globs(ignore: tuple[str, ...]) -> PathMatcher:
    """A matcher for the ignore globs that are not the comparator's defaults."""
    return matcher(g for g in ignore if g not in DEFAULT_IGNORE)


@lru_cache(maxsize=256)  # one per route's ignore globs: its paths repeat exchange after exchange
def _ignored_paths(globs: PathMatcher) -> dict[str, bool]:
    """Whether each path seen so far is ignored, under the route's own ignore `globs`."""
    return {}


@lru_cache(maxsize=256)  # one per route's ignore globs, as `_ignored_paths`
def _member_paths(globs: PathMatcher) -> dict[str, dict[str, tuple[str, bool]]]:
    """Each object's path seen so far -> each member name -> the member's path and whether it
    is ignored, under the route's own ignore `globs`: two lookups of text already hashed."""
    return {}


_MEMBER_PATHS_MAX = 512  # objects (and members of one object) remembered per route


class BacktestDiff:
    """One comparison: walks both trees, handing curves, trade tables and keyed lists to their
    own comparisons and numbers to the tolerance rules."""

    def __init__(self, options: CompareOptions) -> None:
        self.options = options
        # The defaults are member names: a set lookup, not a glob match, on every member.
        self.globs = _route_globs(tuple(options.ignore))
        self.unordered = matcher(options.unordered)
        self.seen = _ignored_paths(self.globs)
        self.member_paths = _member_paths(self.globs)
        # Without per-field tolerances every field has the route's (read once, not per value).
        self.tolerance = (None if options.extra.get("tolerances")
                          else options.tol(DEFAULT_RTOL, DEFAULT_ATOL))

    def ignored(self, path: str) -> bool:
        """Is `path` ignored, by default (ids, run timestamps) or by the route?"""
        hit = self.seen.get(path)
        if hit is None:
            name = path.rsplit(".", 1)[-1]
            hit = (name in VOLATILE or path in TOP_LEVEL_RUN_TIMES
                   or (bool(self.globs) and self.globs(path)))
            if len(self.seen) < 10_000:
                self.seen[path] = hit
        return hit

    def field_tolerance(self, path: str, name: str) -> tuple[float, float]:
        """(rtol, atol) of the field `name` at `path` (`field_tolerance`)."""
        if self.tolerance is not None:
            return self.tolerance
        return field_tolerance(self.options, path, name)

    def _known_members(self, path: str) -> dict[str, tuple[str, bool]]:
        """The member paths (and whether each is ignored) below `path` seen so far."""
        known = self.member_paths.get(path)
        if known is None:
            known = {}
            if len(self.member_paths) < _MEMBER_PATHS_MAX:
                self.member_paths[path] = known
        return known

    def _learn_member(self, known: dict[str, tuple[str, bool]], path: str,
                      name: str) -> tuple[str, bool]:
        """Member `name`'s path below `path` and whether it is ignored, remembered in `known`
        (`path`'s entry of the member-path cache) while it has room."""
        sub = paths.key(path, name)
        member = (sub, self.ignored(sub))
        if len(known) < _MEMBER_PATHS_MAX:
            known[name] = member
        return member

    def kept_members(self, path: str, names: Iterable[str]) -> list[str]:
        """The member `names` below `path` that are not ignored, in their order."""
        known = self._known_members(path)
        kept = []
        for name in names:
            member = known.get(name) or self._learn_member(known, path, name)
            if not member[1]:
                kept.append(name)
        return kept

    def walk(self, path: str, p: Any, c: Any, name: str) -> list[Difference]:
        """The differences below `path`; `name` is the member name that led there."""
        if path and self.ignored(path):
            return []
        return self._value(path, p, c, name)

    def _value(self, path: str, p: Any, c: Any, name: str) -> list[Difference]:
        """`walk` below a path that is not ignored."""
        kind = type(p)
        if kind is type(c) and kind in _SCALARS and self.tolerance is not None:
            # What `compare_scalar` finds, without its checks: equal values of one JSON type
            # agree, and two floats differ by their number only.
            if p == c:
                return []
            if kind is float and not _is_count(name):
                rtol, atol = self.tolerance
                # `within` of two finite floats (p - p is NaN for NaN and infinities)
                if (abs(p - c) <= atol + rtol * max(abs(p), abs(c)) if p - p == 0 == c - c
                        else within(p, c, rtol, atol)):
                    return []
                return [Difference(path, Kind.CHANGED, p, c,
                                   number_message(path, p, c, rtol, atol))]
        if path and kind in _CONTAINERS and _plainly_same(p, c):
            return []
        if isinstance(p, dict) and isinstance(c, dict):
            return self._members(path, p, c)
        if isinstance(p, list) and isinstance(c, list):
            return self._list(path, p, c, name)
        if isinstance(p, dict | list) or isinstance(c, dict | list):
            return generic_bodies(p, c, self.options, path=path)
        rtol, atol = self.field_tolerance(path, name)
        found = compare_scalar(path, p, c, rtol, atol, exact=_is_count(name))
        return [found] if found else []

    def _members(self, path: str, p: dict, c: dict) -> list[Difference]:
        differences = []
        names = list(p) if p.keys() == c.keys() else [*p, *(k for k in c if k not in p)]
        known = self._known_members(path)
        for name in names:
            member = known.get(name) or self._learn_member(known, path, name)
            sub, ignored = member
            if ignored:
                continue
            if name not in c:
                differences.append(member_difference(sub, p[name], missing=True))
            elif name not in p:
                differences.append(member_difference(sub, c[name], missing=False))
            else:  # (`sub` is never "" and not ignored: what `walk` would check again)
                differences += self._value(sub, p[name], c[name], name)
        return differences

    def _list(self, path: str, p: list, c: list, name: str) -> list[Difference]:
        if self.unordered(path):
            return generic_bodies(p, c, self.options, path=path)
        items = p + c
        # A curve's points (objects with a time member, not a trade list) read column by column
        # first: when they have the same members, that also tells they are all objects.
        columns = (_point_table(items) if name not in TRADE_LISTS and items
                   and type(items[0]) is dict else None)
        dicts = columns is not None or (bool(items) and _all_dicts(items))
        if dicts:
            trades = _trade_columns(name, p, c, items)
            if trades is not None:
                return TradeTable(self, path).compare(p, c, trades)
        shape = _curve_shape(p, c, items, dicts, columns)
        if shape is not None:
            return self._curve(path, p, c, name, shape)
        if not dicts and _is_time_list(p, c):
            return self._times(path, p, c)
        keyed = _list_key(p, c) if dicts else None
        if keyed is not None:
            return self._keyed(path, p, c, *keyed)
        if len(p) == len(c):
            differences = []
            for i, (a, b) in enumerate(zip(p, c, strict=True)):
                differences += self.walk(paths.index(path, i), a, b, name)
            return differences
        return generic_bodies(p, c, self.options, path=path)

    def _curve(self, path: str, p: list, c: list, name: str,
               shape: str | dict[str, Sequence[Any]] = "points") -> list[Difference]:
        """Equity curves and other series: arrays compared position by position. `shape` is
        what `_curve_shape` found (the points' columns when they all have the same members)."""
        noun = "points"
        differences = []
        if len(p) != len(c):
            differences.append(
                Difference(
                    path,
                    Kind.LENGTH,
                    len(p),
                    len(c),
                    f"{path} has {len(p)} {noun} vs {len(c)}",
                )
            )
        n = min(len(p), len(c))
        if shape == "numbers":  # no point is an object
            rtol, atol = self.field_tolerance(path, name)
            found = column_difference(
                lambda i: paths.index(path, i), p[:n], c[:n], rtol, atol, what=path, noun=noun
            )
            return [*differences, found] if found else differences
        time_field = next(f for f in TIME_FIELDS if f in (p or c)[0])
        if isinstance(shape, dict):
            return differences + self._point_columns(path, shape, len(p), n, time_field)
        found = compare_time_column(
            lambda i: paths.key(paths.index(path, i), time_field),
            [row.get(time_field) for row in p[:n]],
            [row.get(time_field) for row in c[:n]],
            what=f"{path} timestamps",
            noun=noun,
        )
        if found is not None:
            differences.append(found)
        fields = sorted({k for row in p[:1] + c[:1] for k in row} - {time_field})
        differences += compare_columns(
            lambda i, f: paths.key(paths.index(path, i), f),
            [(i, i) for i in range(n)],
            p,
            c,
            self.kept_members(paths.index(path, 0), fields),
            self.options,
            noun=noun,
            label=lambda f: f"{path}[*].{f}",
        )
        return differences

    def _point_columns(self, path: str, columns: dict[str, Sequence[Any]], split: int, n: int,
                       time_field: str) -> list[Difference]:
        """`_curve` of points with the same members, from their columns over both lists (the
        primary's first `split` values, then the candidate's), the first `n` of each compared:
        what `compare_columns` finds, without reading the points again."""
        noun = "points"

        def column(name: str) -> tuple[Sequence[Any], Sequence[Any]]:
            values = columns[name]
            return values[:n], values[split:split + n]

        differences = []
        found = compare_time_column(
            lambda i: paths.key(paths.index(path, i), time_field),
            *column(time_field),
            what=f"{path} timestamps",
            noun=noun,
        )
        if found is not None:
            differences.append(found)
        if not n:
            return differences

        def field_path(i: int, name: str) -> str:
            return paths.key(paths.index(path, i), name)

        names = self.kept_members(paths.index(path, 0), sorted(set(columns) - {time_field}))
        pairs = [column(name) for name in names]
        return differences + compare_column_table(
            field_path, range(n), names, [a for a, _ in pairs], [b for _, b in pairs],
            self.options, noun=noun, label=lambda name: f"{path}[*].{name}",
            numbers=True)  # (`_curve_shape` saw them all)

    def _times(self, path: str, p: list, c: list) -> list[Difference]:
        """A list of ISO timestamps (a curve's index): a shift is one difference."""
        differences = []
        if len(p) != len(c):
            differences.append(
                Difference(path, Kind.LENGTH, len(p), len(c), f"{path} has {len(p)} vs {len(c)}")
            )
        n = min(len(p), len(c))
        found = compare_time_column(
            lambda i: paths.index(path, i), p[:n], c[:n], what=f"{path} timestamps"
        )
        return [*differences, found] if found else differences

    def _keyed(
        self, path: str, p: list, c: list, what: str, key: Callable[[dict], str]
    ) -> list[Difference]:
        """Lists matched by a key (parameter set, fold number), not by position."""
        p_at = {key(item): i for i, item in enumerate(p)}
        c_at = {key(item): j for j, item in enumerate(c)}
        differences = []
        for k, i in p_at.items():
            sub = paths.index(path, i)
            if k in c_at:
                differences += self.walk(sub, p[i], c[c_at[k]], "")
            else:
                differences.append(
                    Difference(
                        sub, Kind.MISSING, p[i], None, f"{what} {k} missing from the candidate"
                    )
                )
        for k, j in c_at.items():
            if k not in p_at:
                differences.append(
                    Difference(
                        paths.index(path, j),
                        Kind.EXTRA,
                        None,
                        c[j],
                        f"{what} {k} only in the candidate",
                    )
                )
        return differences


_CONTAINERS = (dict, list)
_SCALARS = frozenset({str, int, float, bool, type(None)})


@lru_cache(maxsize=4096)  # member names repeat in every answer
def _is_count(name: str) -> bool:
    """Is the member `name` a count (compared exactly)?"""
    return bool(COUNT.match(name))


def _plainly_same(p: Any, c: Any) -> bool:
    """Equal JSON without null, NaN, infinity or integer past 64 bits inside (orjson writes NaN
    and infinities as null, and refuses such integers): a subtree the walk finds nothing in."""
    if type(p) is not type(c) or p != c:
        return False
    try:
        dumped = orjson.dumps(p)
        return b"null" not in dumped and dumped == orjson.dumps(c)
    except orjson.JSONEncodeError:
        return False


def _curve_shape(p: list, c: list, items: list, dicts: bool,
                 columns: dict[str, Sequence[Any]] | None) -> str | dict[str, Sequence[Any]] | None:
    """Whether `p` and `c` are a series, numbers (and nulls) only ("numbers") or points with a
    timestamp and numbers only ("points"; their columns over ``p + c`` when they all have the
    same members); None when they are not. `items` is ``p + c``, `dicts` whether all of them
    are objects (and there are some), `columns` their `_point_table` when it was read."""
    if not items:
        return None
    if type(items[0]) is not dict and numbers_or_nulls(items):  # (a dict is no number)
        return "numbers"
    if not dicts:
        return None
    time_field = next((f for f in TIME_FIELDS if f in items[0]), None)
    if time_field is None:
        return None
    same_members = columns if columns is not None else columns_if_same_members(items)
    if same_members is None:
        return "points" if all(_is_point(v, time_field) for v in items) else None
    if all(numbers_or_nulls(column) for name, column in same_members.items()
           if name != time_field):
        return same_members
    return None


def _point_table(items: list) -> dict[str, Sequence[Any]] | None:
    """`columns_if_same_members` of `items` (the first an object) when the first has a time
    member (a curve's point), else None; None too when an item is no object (JSON has no other
    value that has a length and members by name)."""
    if not any(f in items[0] for f in TIME_FIELDS):
        return None
    try:
        return columns_if_same_members(items)
    except TypeError:  # a list, text, number or null among the objects
        return None


_PLAIN = frozenset({int, float, type(None)})


def _is_point(item: dict, time_field: str) -> bool:
    """A timestamp under `time_field` and numbers (or nulls) under every other member."""
    if time_field not in item:
        return False
    kinds = list(map(type, item.values()))
    plain = set(kinds) - _PLAIN
    if not plain or (plain == {type(item[time_field])} and kinds.count(plain.pop()) == 1):
        return True  # fast: only the timestamp (if any member) is not a plain number
    return all(k == time_field or x is None or is_number(x) for k, x in item.items())


def _is_time_list(p: list, c: list) -> bool:
    """ISO timestamps only (not numbers, not numeric strings)."""
    items = p + c
    return bool(items) and all(
        isinstance(v, str) and as_number(v, strings=True) is None and to_epoch(v) is not None
        for v in items
    )


def _all_dicts(items: list) -> bool:
    return set(map(type, items)) == {dict} or all(isinstance(v, dict) for v in items)


# A trade list's time field, and its columns per side when every trade of both lists has the
# same members (else None, None).
_TradeColumns = tuple[str, dict[str, Sequence[Any]] | None, dict[str, Sequence[Any]] | None]


def _trade_columns(name: str, p: list[dict], c: list[dict],
                   items: list[dict]) -> _TradeColumns | None:
    """Trades (objects, `items` being ``p + c``): under a trade list's name, or each with an
    entry price or time; and a time field every trade has (a list of open positions, entry prices
    without times, is no trade table). None when they are not trades."""
    if name not in TRADE_LISTS and not all("entry_price" in v or "entry_time" in v
                                           for v in items):
        return None
    p_table = columns_if_same_members(p) if p and c else None
    c_table = columns_if_same_members(c) if p_table is not None else None
    if p_table is None or c_table is None or p_table.keys() != c_table.keys():
        time_field = _trade_time_field(items)
        p_table = c_table = None
    else:  # every trade has exactly the table's members
        time_field = next((f for f in TRADE_TIME_FIELDS if f in p_table), None)
    return None if time_field is None else (time_field, p_table, c_table)


def _trade_time_field(items: Sequence[dict]) -> str | None:
    return next((f for f in TRADE_TIME_FIELDS if all(f in v for v in items)), None)


def _list_key(p: list, c: list) -> tuple[str, Callable[[dict], str]] | None:
    """How to match the items of a list of objects, if not by position."""
    items = p + c
    if not items or not all(isinstance(v, dict) for v in items):
        return None
    for field, what in (("parameters", "parameter set"), ("fold_number", "fold")):
        if all(field in v for v in items):

            def key(item: dict, field: str = field) -> str:
                return json.dumps(item[field], sort_keys=True, default=str)

            if len({key(v) for v in p}) == len(p) and len({key(v) for v in c}) == len(c):
                return what, key
    return None


class TradeTable:
    """Two trade lists as tables aligned on (entry time, symbol, side)."""

    def __init__(self, diff: BacktestDiff, path: str) -> None:
        self.diff = diff
        self.path = path

    def compare(self, p: list[dict], c: list[dict], trades: _TradeColumns) -> list[Difference]:
        """Missing and extra trades, a constant time shift, then column by column. `trades` is
        what `_trade_columns` read of them."""
        time_field, p_table, c_table = trades
        # The usual tables (every trade of both lists with the same members) are read column by
        # column once; the keys, the shift, the moved times and the comparison use those.
        p_cols: _RowColumns | Mapping[str, Sequence[Any]]
        c_cols: _RowColumns | Mapping[str, Sequence[Any]]
        if p_table is None or c_table is None:
            p_cols, c_cols = _RowColumns(p), _RowColumns(c)
            rows = p + c
            keys = [k for k in ("symbol", "side")
                    if all(map(dict.__contains__, rows, [k] * len(rows)))]
        else:
            p_cols, c_cols = p_table, c_table
            keys = [k for k in ("symbol", "side") if k in p_table]
        p_labels = [list(map(str, p_cols[k])) for k in keys]
        c_labels = [list(map(str, c_cols[k])) for k in keys]
        p_whens, c_whens = _whens(p_cols[time_field]), _whens(c_cols[time_field])
        same_labels = p_labels == c_labels
        differences = []
        shift = 0
        aligned = True  # the pairs are (i, i) for every trade of both lists
        # The keys (`_keys`) are the same when their times and labels are: the common case,
        # same trades, same order.
        if same_labels and p_whens == c_whens:
            pairs: list[tuple[int, int]] = [(i, i) for i in range(len(p_whens))]
            missing: list[int] = []
            extra: list[int] = []
        else:
            p_prices = _column(p_cols, "entry_price", len(p))
            c_prices = _column(c_cols, "entry_price", len(c))
            shift = _constant_shift(p_whens, c_whens, p_labels, same_labels, p_prices,
                                    c_prices)
            if shift:  # what the alignment and the shift vote below come to, in one pass
                pairs, missing, extra = [(i, i) for i in range(len(p_whens))], [], []
            else:
                aligned = False
                p_keys, c_keys = _keys(p_whens, p_labels), _keys(c_whens, c_labels)
                pairs, missing, extra = _align(p_keys, c_keys, 0)
                if missing and extra:
                    found = self._shift(p_prices, c_prices, p_keys, c_keys)
                    if found:
                        shift = found
                        pairs, missing, extra = _align(p_keys, c_keys, shift)
            if shift:
                i, j = pairs[0]
                differences.append(
                    shift_difference(
                        paths.key(paths.index(self.path, i), time_field),
                        p[i][time_field],
                        c[j][time_field],
                        shift / 1000,
                        f"{self.path} entry times",
                    )
                )
        differences += self._unmatched(p, missing, time_field, keys, Kind.MISSING)
        differences += self._unmatched(c, extra, time_field, keys, Kind.EXTRA)
        if self.diff.options.extra.get("trade_order") and [j for _, j in pairs] != sorted(
            j for _, j in pairs
        ):
            differences.append(
                Difference(self.path, Kind.ORDER, None, None, f"{self.path} in another order")
            )
        def field_path(i: int, f: str) -> str:
            return paths.key(paths.index(self.path, i), f)

        fields = sorted(p_table) if p_table is not None else sorted(set().union(*p, *c))
        if pairs:
            fields = self.diff.kept_members(paths.index(self.path, pairs[0][0]), fields)
        if shift:  # times moved by the shift were said once; the time field is (it pairs them)
            fields = [f for f in fields if f != time_field
                      and not _moved_by(p_cols[f], c_cols[f], pairs, shift, aligned)]
        if p_table is None or c_table is None or not pairs:
            return differences + compare_columns(
                field_path, pairs, p, c, fields, self.diff.options, noun="trades",
                label=lambda f: f"{self.path}[*].{f}",
            )
        if aligned:  # trade i with trade i, all of them: the columns as they are
            p_at = list(range(len(pairs)))
            p_picked, c_picked = [p_table[f] for f in fields], [c_table[f] for f in fields]
        else:
            p_at, c_at = [i for i, _ in pairs], [j for _, j in pairs]
            p_picked = _picked([p_table[f] for f in fields], p_at)
            c_picked = _picked([c_table[f] for f in fields], c_at)
        return differences + compare_column_table(
            field_path,
            p_at,
            fields,
            p_picked,
            c_picked,
            self.diff.options,
            noun="trades",
            label=lambda f: f"{self.path}[*].{f}",
        )

    def _shift(
        self, p_prices: Sequence[Any], c_prices: Sequence[Any], p_keys: list[tuple],
        c_keys: list[tuple]
    ) -> int | None:
        """A constant entry-time shift that aligns the trades and their prices."""
        p_times, c_times = [k[0] for k in p_keys], [k[0] for k in c_keys]
        if not set(map(type, p_times)) | set(map(type, c_times)) <= {int}:  # keys: int or text
            return None
        c_at = dict(zip(c_keys, range(len(c_keys)), strict=True))
        rtol, atol = self.diff.options.tol(1e-9, 1e-12)

        def same(a: Any, b: Any) -> bool:
            if is_number(a) and is_number(b):
                return within(float(a), float(b), rtol, atol)
            return a == b

        # For every shift, the trades that land on a candidate trade (the last with that key)
        # with the same entry price: counted once from the pairs whose prices agree.
        votes: Counter[int] = Counter()
        for i, j in near_pairs(p_prices, c_prices, rtol, atol):
            key = c_keys[j]
            if c_at[key] == j and key[1:] == p_keys[i][1:]:
                a, b = p_prices[i], c_prices[j]
                # equal floats are within any tolerance: `same` without its calls
                if (a == b and type(a) is float and type(b) is float) or same(a, b):
                    votes[key[0] - p_keys[i][0]] += 1
        found = best_shift(p_times, c_times, lambda shift: votes.get(shift, 0), scoring=votes)
        return found[0] if found else None

    def _unmatched(
        self, rows: list[dict], indices: list[int], time_field: str, keys: Sequence[str], kind: Kind
    ) -> list[Difference]:
        """One difference naming the trades one side lacks."""
        if not indices:
            return []
        named = [
            " ".join(str(rows[i].get(k)) for k in reversed(keys))
            + f" at {show(rows[i].get(time_field))}"
            for i in indices[:SHOWN]
        ]
        more = f" and {len(indices) - SHOWN} more" if len(indices) > SHOWN else ""
        noun = "trade" if len(indices) == 1 else "trades"
        where = "missing from the candidate" if kind is Kind.MISSING else "only in the candidate"
        sample = [rows[i] for i in indices[:SHOWN]]
        return [
            Difference(
                paths.index(self.path, indices[0]),
                kind,
                sample if kind is Kind.MISSING else None,
                sample if kind is Kind.EXTRA else None,
                f"{len(indices)} {noun} {where} ({'; '.join(named)}{more})",
            )
        ]


class _RowColumns:
    """A field's values over rows that may lack it (None there), read when asked for."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __getitem__(self, name: str) -> list[Any]:
        return [row.get(name) for row in self.rows]


def _column(columns: Any, name: str, size: int) -> Sequence[Any]:
    """Field `name` of every row (None where a row lacks it) from `TradeTable`'s columns."""
    if isinstance(columns, dict) and name not in columns:
        return (None,) * size
    return columns[name]


def _picked(columns: list[Sequence[Any]], at: list[int]) -> list[Sequence[Any]]:
    """The values of each column at `at` (the columns themselves when that is all of them, in
    order)."""
    if not columns or (len(at) == len(columns[0]) and at == list(range(len(at)))):
        return columns
    return [tuple(map(column.__getitem__, at)) for column in columns]


def _whens(times: Sequence[Any]) -> list[Any]:
    """Each trade's time as its exact key (its text when it is no time)."""
    whens: list[Any] = time_keys(times)
    if None in whens:
        whens = [str(t) if w is None else w for w, t in zip(whens, times, strict=True)]
    return whens


def _keys(whens: list[Any], labels: list[list[str]]) -> list[tuple]:
    """Each trade's key: its time's key (`_whens`) and its labels (as text)."""
    return list(zip(whens, *labels, strict=True))


def _constant_shift(p_whens: list[Any], c_whens: list[Any], p_labels: list[list[str]],
                    same_labels: bool, p_prices: Sequence[Any], c_prices: Sequence[Any]) -> int:
    """The shift `TradeTable.compare` finds when the candidate's trades are the primary's, in
    order, with the same labels and entry prices, every time moved by one constant (not 0): the
    only shift that aligns every trade (the vote's best), and the alignment it makes is trade i
    with trade i. 0 when the trades are not so."""
    if not same_labels or len(p_whens) != len(c_whens) or not p_whens:
        return 0
    try:  # times are int keys or text (`_whens`): text (no time) cannot be subtracted
        deltas = list(map(operator.sub, c_whens, p_whens))
    except TypeError:
        return 0
    shift: int = deltas[0]
    if not shift or deltas.count(shift) != len(deltas):
        return 0
    # Trades with one key each (distinct times tell it without building the keys).
    size = len(p_whens)
    if len(set(p_whens)) != size and len(set(_keys(p_whens, p_labels))) != size:
        return 0
    # Equal prices (`==`, or the same object) are the same price to the vote.
    if type(p_prices) is type(c_prices):
        same_prices = p_prices == c_prices
    else:
        same_prices = list(p_prices) == list(c_prices)
    return shift if same_prices else 0


def _moved_by(
    p_column: Sequence[Any], c_column: Sequence[Any], pairs: list[tuple[int, int]], shift: int,
    aligned: bool = False,
) -> bool:
    """Is the field of these columns a time moved by exactly `shift` (not 0) in every aligned
    trade (said once already)? `aligned`: the pairs are (i, i) for every value of both
    columns."""
    if not pairs:
        return True
    i, j = pairs[0]  # most fields are no time, or not moved so: told by the first trade
    if p_column[i] == c_column[j]:  # equal values: one key (or none), not moved by `shift`
        return False
    a, b = time_key(p_column[i]), time_key(c_column[j])
    if a is None or b is None or b - a != shift:
        return False
    if aligned:
        moved, at = time_keys(c_column), time_keys(p_column)
    else:
        moved = time_keys([c_column[j] for _, j in pairs])
        at = time_keys([p_column[i] for i, _ in pairs])
    if None in moved or None in at:
        return False
    deltas = list(map(operator.sub, cast(list[int], moved), cast(list[int], at)))  # (no None)
    return deltas.count(shift) == len(deltas)


def _align(
    p_keys: list[tuple], c_keys: list[tuple], shift: int
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Pairs (primary index, candidate index) of trades with one key, and the unmatched ones.

    Matched on the key plus its occurrence number, so two trades with one key pair up in order
    instead of crossing.
    """
    if not shift and p_keys == c_keys:  # the common case: same trades, same order
        return [(i, i) for i in range(len(p_keys))], [], []
    if len(set(p_keys)) == len(p_keys) and len(set(c_keys)) == len(c_keys):
        # No key repeats (the usual table): every occurrence number is 0.
        candidate_at = dict(zip(c_keys, range(len(c_keys)), strict=True))
        pairs, missing = [], []
        for i, key in enumerate(p_keys):
            j = candidate_at.pop((key[0] + shift, *key[1:]) if shift else key, None)
            if j is None:
                missing.append(i)
            else:
                pairs.append((i, j))
        return pairs, missing, sorted(candidate_at.values())
    candidate_at = {label: j for j, label in enumerate(_occurrences(c_keys, 0))}
    pairs, missing = [], []
    for i, label in enumerate(_occurrences(p_keys, shift)):
        j = candidate_at.pop(label, None)
        if j is None:
            missing.append(i)
        else:
            pairs.append((i, j))
    return pairs, missing, sorted(candidate_at.values())


def _occurrences(keys: list[tuple], offset: int) -> list[tuple[tuple, int]]:
    """Each key (its time moved by `offset`) with how many times it came before."""
    seen: dict[tuple, int] = {}
    labels = []
    for key in keys:
        moved = (key[0] + offset, *key[1:]) if offset else key
        count = seen.get(moved, 0)
        seen[moved] = count + 1
        labels.append((moved, count))
    return labels
