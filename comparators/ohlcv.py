"""The `ohlcv` comparator: candle lists aligned by timestamp, not by position.

A candle is ``{timestamp, open, high, low, close, volume, ...}`` or the ccxt row
``[timestamp, open, high, low, close, volume]``; the list is the body itself or sits under
``data``/``candles``/``ohlcv``. Differences a reviewer can act on, one per cause:

- candles missing from (or only in) the candidate's answer: one difference each way, with the count
  and the first few timestamps;
- a constant timestamp shift (a timezone): one difference, ``candles shifted by +1h``, found by
  testing whether shifting the candidate's timestamps by a constant aligns the candles *and* their
  values (hourly candles moved by an hour always overlap; only the right shift makes OHLC match);
- the same instants in another notation (``...Z`` vs ``...+00:00``, seconds vs milliseconds);
- OHLC and volume within tolerance (default rtol 1e-9, atol 1e-12): one difference per column at
  the first candle outside it, with the largest deviation and how many candles differ;
- the same candles in another order.
"""

from __future__ import annotations

import itertools
import operator
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from harness.diff import paths
from harness.diff.base import CompareOptions, Lifted, register
from harness.diff.values import (
    best_shift,
    compare_answers,
    compare_column_table,
    compare_columns,
    field_tolerance,
    generic_bodies,
    is_number,
    near_count,
    near_pairs,
    shift_difference,
    show,
    time_keys,
    within,
)
from harness.model import Difference, Kind

TIME_FIELDS = ("timestamp", "time", "datetime", "date", "open_time", "ts", "t")
LIST_KEYS = ("data", "candles", "ohlcv", "items", "results")
# Positions of a ccxt candle row.
ROW_FIELDS = ("timestamp", "open", "high", "low", "close", "volume")
VALUE_FIELDS = ("open", "high", "low", "close", "volume")
SHOWN = 3  # timestamps named in a missing/extra difference
_TIME_NAMES, _VALUE_NAMES = frozenset(TIME_FIELDS), frozenset(VALUE_FIELDS)
Columns = dict[str, Sequence[Any]]  # field name -> its value in every candle, in order


@register("ohlcv", identical_is_match=True)
def compare_ohlcv(primary: Lifted, candidate: Lifted, options: CompareOptions) -> list[Difference]:
    """Compare two OHLCV answers candle by candle (see the module docstring)."""
    return compare_answers(primary, candidate, options, _compare_bodies)


def _compare_bodies(
    primary: Lifted, candidate: Lifted, options: CompareOptions
) -> list[Difference]:
    p_found, c_found = _locate(primary.body), _locate(candidate.body)
    if p_found is None or c_found is None or p_found[0] != c_found[0]:
        return generic_bodies(primary.body, candidate.body, options)
    (where, p_columns), (_, c_columns) = p_found, c_found
    differences = []
    if where:  # candles under a key: the rest of the envelope is plain JSON
        rest_p = {k: v for k, v in primary.body.items() if k != where}
        rest_c = {k: v for k, v in candidate.body.items() if k != where}
        differences += generic_bodies(rest_p, rest_c, options)
        p_list, c_list = primary.body[where], candidate.body[where]
    else:
        p_list, c_list = primary.body, candidate.body
    return differences + _compare_lists(
        paths.key("", where) if where else "", p_list, c_list, options, p_columns, c_columns
    )


def _locate(body: Any) -> tuple[str, Columns | None] | None:
    """Where the candle list is (``""`` for the body itself, or a key) with the candles'
    columns when every candle is an object with the first one's members (read once, for every
    later step); None when the body holds no candle list."""
    if isinstance(body, list):
        return _candle_list("", body)
    if isinstance(body, dict):
        for name in LIST_KEYS:
            value = body.get(name)
            if isinstance(value, list) and value:
                found = _candle_list(name, value)
                if found is not None:
                    return found
    return None


def _candle_list(where: str, items: list) -> tuple[str, Columns | None] | None:
    columns = _columns(items)
    if columns is not None:
        # Every item an object with the first one's members: candles when those name a time and
        # a value (what `_all_candles` decides of such a list).
        if _TIME_NAMES.isdisjoint(columns) or _VALUE_NAMES.isdisjoint(columns):
            return None
        return where, columns
    return (where, None) if _all_candles(items) else None


def _columns(items: Sequence[Any]) -> Columns | None:
    """Every member of the first item, column by column, when every item is an object with (at
    least) those members and there are two or more of them; else None."""
    if not items or type(items[0]) is not dict or len(items[0]) < 2:
        return None
    names = tuple(items[0])
    try:
        table = list(map(operator.itemgetter(*names), items))
    except (KeyError, TypeError):  # a member missing, or an item that is no object
        return None
    return dict(zip(names, zip(*table, strict=True), strict=True))


def _all_candles(items: list) -> bool:
    if items and set(map(type, items)) == {dict}:
        # The usual list: one time field and one value field that every candle has.
        first = items[0]
        time_name = next((n for n in TIME_FIELDS if n in first), None)
        value_name = next((n for n in VALUE_FIELDS if n in first), None)
        if (time_name is not None and value_name is not None
                and all(map(operator.contains, items, itertools.repeat(time_name)))
                and all(map(operator.contains, items, itertools.repeat(value_name)))):
            return True
        # Whether an object is a candle depends on its member names only: one of each shape.
        return all(map(_is_candle, dict(zip(map(tuple, items), items, strict=True)).values()))
    return all(map(_is_candle, items))


def _is_candle(item: Any) -> bool:
    if isinstance(item, dict):
        return not _TIME_NAMES.isdisjoint(item) and not _VALUE_NAMES.isdisjoint(item)
    if isinstance(item, list):
        return len(item) >= 5 and all(v is None or is_number(v) for v in item[1:5])
    return False


@dataclass(slots=True)
class Candles:
    """One side's candles as rows of named fields, with their timestamps read."""

    rows: list[dict[str, Any]]
    raw_times: Sequence[Any]
    keys: list[int]  # epoch milliseconds
    time_field: str
    as_rows: bool  # ccxt rows (fields are positions) rather than objects
    # every row's fields, column by column, when every row has the first row's fields
    columns: Columns | None = None
    ascending: bool = True  # the timestamps strictly ascending (so none repeated)
    _at: dict[int, int] | None = None

    @classmethod
    def read(cls, items: Sequence[Any], columns: Columns | None = None) -> Candles | None:
        """The candles, or None when a timestamp cannot be read. `columns`: `_columns(items)`
        when already read."""
        as_rows = bool(items) and isinstance(items[0], list)
        if as_rows:
            rows = [dict(zip(_row_names(len(item)), item, strict=True)) for item in items]
            time_field = "timestamp"
            columns = _columns(rows)
        else:
            rows = list(items)  # read, never changed
            first = rows[0] if rows else {}
            time_field = next((f for f in TIME_FIELDS if f in first), "timestamp")
            if columns is None:
                columns = _columns(rows)
        raw: Sequence[Any]
        if columns is not None and time_field in columns:
            raw = columns[time_field]
        else:
            try:
                raw = list(map(operator.itemgetter(time_field), rows))
            except (KeyError, TypeError):  # a row without the field (or not an object)
                raw = [row.get(time_field) for row in rows]
        keys = cast("list[int]", time_keys(raw))
        try:
            ascending = all(map(operator.lt, keys, itertools.islice(keys, 1, None)))
        except TypeError:  # a time that could not be read (None) among them
            return None
        if (not ascending or len(keys) == 1) and None in keys:
            return None
        return cls(rows, raw, keys, time_field, as_rows, columns, ascending)

    @property
    def at(self) -> dict[int, int]:
        """Timestamp -> index of its first candle, in the order of those indexes."""
        if self._at is None:
            self._at = _first_at(self.keys)
        return self._at

    @property
    def unique(self) -> bool:
        """No timestamp repeated."""
        return self.ascending or len(self.at) == len(self.keys)

    @property
    def times(self) -> int:
        """How many distinct timestamps."""
        return len(self.keys) if self.ascending else len(self.at)

    def field_segment(self, name: str) -> str | int:
        return (
            _row_names(len(self.rows[0]) if self.rows else 6).index(name) if self.as_rows else name
        )

    def firsts(self) -> Sequence[int]:
        """The index of the first candle of each timestamp, ascending."""
        return range(len(self.keys)) if self.unique else sorted(self.at.values())

    def values_at(self, name: str, indices: Sequence[int]) -> Sequence[Any]:
        """Field `name` of the candles at `indices` (None where a candle lacks it)."""
        column = self.columns.get(name) if self.columns is not None else None
        if column is None:
            return [self.rows[i].get(name) for i in indices]
        return _take(indices)(column)


def _take(indices: Sequence[int]) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """Reads a column at `indices`: a slice where they are consecutive and ascending."""
    if isinstance(indices, range):  # of step 1
        return operator.itemgetter(slice(indices.start, indices.stop))
    if not indices:
        return lambda column: []
    start, stop = indices[0], indices[-1] + 1
    if stop - start == len(indices) and indices == list(range(start, stop)):
        return operator.itemgetter(slice(start, stop))
    return lambda column: list(map(column.__getitem__, indices))


def _row_names(length: int) -> tuple[str, ...]:
    """The field names of a ccxt row of `length` values (a row without volume has five)."""
    return ROW_FIELDS[:length] + tuple(f"col{i}" for i in range(len(ROW_FIELDS), length))


def _compare_lists(
    path: str,
    primary: Sequence[Any],
    candidate: Sequence[Any],
    options: CompareOptions,
    p_columns: Columns | None,
    c_columns: Columns | None,
) -> list[Difference]:
    p, c = Candles.read(primary, p_columns), Candles.read(candidate, c_columns)
    if p is None or c is None or (primary and candidate and p.as_rows != c.as_rows):
        return generic_bodies(list(primary), list(candidate), options, path=path)

    def field_path(i: int, name: str) -> str:
        row_path = paths.index(path, i)
        segment = p.field_segment(name)
        return (
            paths.index(row_path, segment)
            if isinstance(segment, int)
            else paths.key(row_path, segment)
        )

    shift = 0
    p_pos: Sequence[int]
    c_pos: Sequence[int]
    if p.unique and p.keys == c.keys:
        # The usual answer: the same timestamps in the same order, none repeated. The candles
        # pair by position; none is repeated, missing, extra, shifted or out of order.
        differences: list[Difference] = []
        p_pos = c_pos = range(len(p.keys))
        missing: list[int] = []
        extra: list[int] = []
    else:
        differences = _duplicates(path, p, c)
        overlap = _overlap(p, c)
        # (ascending timestamps that are not the same: not the same set)
        if overlap is not None or p.at.keys() != c.at.keys():
            votes = _shift_votes(p, c, options, field_path)
            # No shift wins without votes from at least half the candles: skip the search then.
            needed = max(votes.get(0, 0) + 1, (min(p.times, c.times) + 1) // 2)
            found = (best_shift(p.at, c.at, lambda s: votes.get(s, 0), scoring=votes)
                     if max(votes.values(), default=0) >= needed else None)
            if found is not None:
                shift = found[0]
                p_at, c_at = p.at, c.at
                overlap = _overlap(p, c, shift)
                first = (overlap[0].start if overlap is not None
                         else min(p_at[k] for k in p_at if k + shift in c_at))
                differences.append(
                    shift_difference(
                        field_path(first, p.time_field),
                        p.raw_times[first],
                        c.raw_times[c_at[p.keys[first] + shift]],
                        shift / 1000,
                        "candles",
                    )
                )
        if overlap is not None:
            p_pos, c_pos = overlap
            missing = [*range(p_pos.start), *range(p_pos.stop, len(p.keys))]
            extra = [*range(c_pos.start), *range(c_pos.stop, len(c.keys))]
        elif shift:
            p_pos = [i for k, i in p_at.items() if k + shift in c_at]
            c_pos = [c_at[p.keys[i] + shift] for i in p_pos]
            missing = [i for k, i in p_at.items() if k + shift not in c_at]
            extra = [j for k, j in c_at.items() if k - shift not in p_at]
        else:
            p_at, c_at = p.at, c.at
            shared = list(map(c_at.__contains__, p_at))
            p_pos = list(itertools.compress(p_at.values(), shared))
            c_pos = list(map(c_at.__getitem__, itertools.compress(p_at, shared)))
            missing = ([] if len(p_pos) == len(p_at) else
                       list(itertools.compress(p_at.values(), map(operator.not_, shared))))
            extra = ([] if len(c_pos) == len(c_at) else list(itertools.compress(
                c_at.values(), map(operator.not_, map(p_at.__contains__, c_at)))))
    differences += _missing(path, p, missing, Kind.MISSING)
    differences += _missing(path, c, extra, Kind.EXTRA)
    differences += _order(path, c_pos, p, c)
    p_take, c_take = _take(p_pos), _take(c_pos)
    if not shift:
        differences += _notation(p_pos, p_take(p.raw_times), c_take(c.raw_times), p,
                                 field_path)
    fields = sorted(({*p.rows[0]} if p.rows else set()) | ({*c.rows[0]} if c.rows else set()))
    fields = [f for f in fields if f not in (p.time_field, c.time_field)]
    if p.time_field != c.time_field and p_pos:
        i, j = p_pos[0], c_pos[0]
        differences.append(
            Difference(
                field_path(i, p.time_field),
                Kind.MISSING,
                p.raw_times[i],
                c.raw_times[j],
                f"candle time field {p.time_field!r} vs {c.time_field!r}",
            )
        )
    if (p_pos and fields and p.columns is not None and c.columns is not None
            and all(f in p.columns and f in c.columns for f in fields)):
        # Every candle has every field: the columns already read, aligned.
        differences += compare_column_table(
            field_path, p_pos, fields, [p_take(p.columns[f]) for f in fields],
            [c_take(c.columns[f]) for f in fields], options, noun="candles")
    else:
        differences += compare_columns(field_path, list(zip(p_pos, c_pos, strict=True)),
                                       p.rows, c.rows, fields, options, noun="candles")
    return differences


def _overlap(p: Candles, c: Candles, shift: int = 0) -> tuple[range, range] | None:
    """The candles both sides have (the primary's moved by `shift`), when both sides' timestamps
    ascend and the shared ones are one run (two windows of the same series: latest candles asked
    a little apart), as (primary's, candidate's) index ranges; None otherwise."""
    if not (p.ascending and c.ascending and p.keys and c.keys):
        return None
    p_keys = list(map(operator.add, p.keys, itertools.repeat(shift))) if shift else p.keys
    p_first = p_keys[0] >= c.keys[0]
    earlier, later = (c.keys, p_keys) if p_first else (p_keys, c.keys)
    try:
        start = earlier.index(later[0])
    except ValueError:  # the later side starts between two of the earlier side's candles
        return None
    count = min(len(earlier) - start, len(later))
    # Before the run the earlier side's times are earlier than all the later side's; after it
    # one side has no candles left and the other's are later than all of its.
    if earlier[start:start + count] != later[:count]:
        return None
    runs = range(start, start + count), range(count)
    return (runs[1], runs[0]) if p_first else runs


def _first_at(keys: list[int]) -> dict[int, int]:
    """Timestamp -> index of its first candle, in the order of those indexes."""
    if len(set(keys)) == len(keys):
        return dict(zip(keys, range(len(keys)), strict=True))
    first: dict[int, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    return first


def _shift_votes(
    p: Candles,
    c: Candles,
    options: CompareOptions,
    field_path: Callable[[int, str], str],
) -> Counter[int]:
    """For every shift, how many of the primary's candles (the first of each timestamp) carry
    the same values as the candidate's candle (the first of its timestamp) that much later: the
    score of `best_shift`, counted once for all shifts from the pairs whose closes agree. Empty
    when no shift can have the votes of half the candles (too few closes agree at all)."""
    firsts_p, firsts_c = p.firsts(), c.firsts()
    p_close, c_close = p.values_at("close", firsts_p), c.values_at("close", firsts_c)
    rtol, atol = field_tolerance(options, field_path(0, "close"), "close")
    votes: Counter[int] = Counter()
    most = near_count(p_close, c_close, rtol, atol)
    if most is not None and most < max(1, (min(len(firsts_p), len(firsts_c)) + 1) // 2):
        return votes
    matches = _value_matcher(p, c, options, field_path)
    pairs = near_pairs(p_close, c_close, rtol, atol)
    p_values, c_values = _value_rows(p, firsts_p), _value_rows(c, firsts_c)
    if not pairs or p_values is None or c_values is None:
        for a, b in pairs:
            i, j = firsts_p[a], firsts_c[b]
            if matches(i, j):
                votes[c.keys[j] - p.keys[i]] += 1
        return votes
    # Candles whose values are all equal match (the usual vote, decided at C speed); the others
    # are checked within tolerance one by one.
    p_at, c_at = zip(*pairs, strict=True)
    same = list(map(operator.eq, map(p_values.__getitem__, p_at), map(c_values.__getitem__, c_at)))
    p_index, c_index = list(map(firsts_p.__getitem__, p_at)), list(map(firsts_c.__getitem__, c_at))
    for k in itertools.compress(range(len(same)), map(operator.not_, same)):
        same[k] = matches(p_index[k], c_index[k])
    votes.update(itertools.compress(
        map(operator.sub, map(c.keys.__getitem__, c_index), map(p.keys.__getitem__, p_index)),
        same))
    return votes


def _value_rows(side: Candles, indices: Sequence[int]) -> list[tuple[Any, ...]] | None:
    """The OHLCV values of the candles at `indices`, one tuple each; None unless every candle has
    every one of them."""
    if side.columns is None or not all(name in side.columns for name in VALUE_FIELDS):
        return None
    take = _take(indices)
    return list(zip(*(take(side.columns[name]) for name in VALUE_FIELDS), strict=True))


def _value_matcher(
    p: Candles, c: Candles, options: CompareOptions, field_path: Callable[[int, str], str]
) -> Callable[[int, int], bool]:
    """Do primary candle i and candidate candle j carry the same OHLCV values?"""
    tolerances = {
        name: field_tolerance(options, field_path(0, name), name) for name in VALUE_FIELDS
    }
    values = operator.itemgetter(*VALUE_FIELDS)

    def matches(i: int, j: int) -> bool:
        try:  # equal values (the usual pair) always match: one comparison
            if values(p.rows[i]) == values(c.rows[j]):
                return True
        except KeyError:
            pass
        for name, (rtol, atol) in tolerances.items():
            a, b = p.rows[i].get(name), c.rows[j].get(name)
            if is_number(a) and is_number(b):
                if not within(float(a), float(b), rtol, atol):
                    return False
            elif a != b:
                return False
        return True

    return matches


def _missing(path: str, side: Candles, indices: list[int], kind: Kind) -> list[Difference]:
    """One difference for all the candles one side lacks: count and first few timestamps."""
    if not indices:
        return []
    indices = sorted(indices)
    times = [side.raw_times[i] for i in indices[:SHOWN]]
    named = ", ".join(show(t) for t in times)
    more = f" and {len(indices) - SHOWN} more" if len(indices) > SHOWN else ""
    noun = "candle" if len(indices) == 1 else "candles"
    where = "missing from the candidate" if kind is Kind.MISSING else "only in the candidate"
    primary, candidate = (times, None) if kind is Kind.MISSING else (None, times)
    return [
        Difference(
            paths.index(path, indices[0]),
            kind,
            primary,
            candidate,
            f"{len(indices)} {noun} {where} ({named}{more})",
        )
    ]


def _order(path: str, order: Sequence[int], p: Candles, c: Candles) -> list[Difference]:
    """One difference when the aligned candles (the candidate's `order`, by the primary's) come
    in another order."""
    # the indexes are distinct: sorted is strictly increasing
    if isinstance(order, range) or order == sorted(order):
        return []
    return [
        Difference(
            path,
            Kind.ORDER,
            _direction(p.keys),
            _direction(c.keys),
            f"candles in another order: {_direction(p.keys)} vs {_direction(c.keys)}",
        )
    ]


def _direction(keys: list[int]) -> str:
    if all(a <= b for a, b in itertools.pairwise(keys)):
        return "ascending"
    if all(a >= b for a, b in itertools.pairwise(keys)):
        return "descending"
    return "unsorted"


def _notation(
    p_pos: Sequence[int],
    p_times: Sequence[Any],
    c_times: Sequence[Any],
    p: Candles,
    field_path: Callable[[int, str], str],
) -> list[Difference]:
    """The same instants written another way (``Z`` vs ``+00:00``, s vs ms): one difference.
    `p_times`, `c_times`: the aligned candles' times (the primary's at `p_pos`)."""
    if type(p_times) is not type(c_times):
        p_times, c_times = list(p_times), list(c_times)
    if p_times == c_times and (
            set(map(type, p_times)) <= {str}  # equal to text: text too
            or list(map(type, p_times)) == list(map(type, c_times))):
        return []
    for i, a, b in zip(p_pos, p_times, c_times, strict=True):
        if a != b:
            kind = Kind.TYPE if type(a) is not type(b) else Kind.CHANGED
            return [
                Difference(
                    field_path(i, p.time_field),
                    kind,
                    a,
                    b,
                    "candle timestamps are the same instants in another notation: "
                    f"{show(a)} vs {show(b)}",
                )
            ]
    return []


def _duplicates(path: str, p: Candles, c: Candles) -> list[Difference]:
    """Candles repeating a timestamp in one answer only: said once per side, since alignment keeps
    the first candle of each timestamp."""
    if p.unique and c.unique:
        return []
    p_repeats, c_repeats = _repeats(p.keys), _repeats(c.keys)
    differences = []
    for side, mine, theirs, kind, who in (
        (p, p_repeats, c_repeats, Kind.MISSING, "primary"),
        (c, c_repeats, p_repeats, Kind.EXTRA, "candidate"),
    ):
        only = [i for k, i in mine.items() if k not in theirs]
        if not only:
            continue
        first = min(only)
        value = side.raw_times[first]
        differences.append(
            Difference(
                paths.index(path, first),
                kind,
                value if kind is Kind.MISSING else None,
                value if kind is Kind.EXTRA else None,
                f"{len(only)} candles repeat a timestamp in the {who}'s answer only "
                f"(first {show(value)})",
            )
        )
    return differences


def _repeats(keys: list[int]) -> dict[int, int]:
    """Timestamp -> index of its first repetition."""
    if len(set(keys)) == len(keys):
        return {}
    seen: set[int] = set()
    repeats: dict[int, int] = {}
    for i, k in enumerate(keys):
        if k in seen:
            repeats.setdefault(k, i)
        seen.add(k)
    return repeats
