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
from typing import Any

from harness.diff import paths
from harness.diff.base import CompareOptions, Lifted, register
from harness.diff.values import (
    best_shift,
    compare_answers,
    compare_columns,
    field_tolerance,
    generic_bodies,
    is_number,
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


@register("ohlcv")
def compare_ohlcv(primary: Lifted, candidate: Lifted, options: CompareOptions) -> list[Difference]:
    """Compare two OHLCV answers candle by candle (see the module docstring)."""
    return compare_answers(primary, candidate, options, _compare_bodies)


compare_ohlcv.identical_is_match = True  # type: ignore[attr-defined]


def _compare_bodies(
    primary: Lifted, candidate: Lifted, options: CompareOptions
) -> list[Difference]:
    p_where, c_where = find_candles(primary.body), find_candles(candidate.body)
    if p_where is None or p_where != c_where:
        return generic_bodies(primary.body, candidate.body, options)
    differences = []
    if p_where:  # candles under a key: the rest of the envelope is plain JSON
        rest_p = {k: v for k, v in primary.body.items() if k != p_where}
        rest_c = {k: v for k, v in candidate.body.items() if k != p_where}
        differences += generic_bodies(rest_p, rest_c, options)
        p_list, c_list = primary.body[p_where], candidate.body[p_where]
    else:
        p_list, c_list = primary.body, candidate.body
    return differences + compare_candles(
        paths.key("", p_where) if p_where else "", p_list, c_list, options
    )


def find_candles(body: Any) -> str | None:
    """Where the candle list is: ``""`` for the body itself, a key, or None (not candles)."""
    if isinstance(body, list):
        return "" if _all_candles(body) else None
    if isinstance(body, dict):
        for name in LIST_KEYS:
            value = body.get(name)
            if isinstance(value, list) and value and _all_candles(value):
                return name
    return None


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
    raw_times: list[Any]
    keys: list[int]  # epoch milliseconds
    time_field: str
    as_rows: bool  # ccxt rows (fields are positions) rather than objects

    @classmethod
    def read(cls, items: Sequence[Any]) -> Candles | None:
        """The candles, or None when a timestamp cannot be read."""
        as_rows = bool(items) and isinstance(items[0], list)
        if as_rows:
            rows = [dict(zip(_row_names(len(item)), item, strict=True)) for item in items]
            time_field = "timestamp"
        else:
            rows = list(items)  # read, never changed
            time_field = next((f for f in TIME_FIELDS if rows and f in rows[0]), "timestamp")
        try:
            raw = list(map(operator.itemgetter(time_field), rows))
        except (KeyError, TypeError):  # a row without the field (or not an object)
            raw = [row.get(time_field) for row in rows]
        keys = time_keys(raw)
        if None in keys:
            return None
        return cls(rows, raw, keys, time_field, as_rows)  # type: ignore[arg-type]

    def field_segment(self, name: str) -> str | int:
        return (
            _row_names(len(self.rows[0]) if self.rows else 6).index(name) if self.as_rows else name
        )


def _row_names(length: int) -> tuple[str, ...]:
    """The field names of a ccxt row of `length` values (a row without volume has five)."""
    return ROW_FIELDS[:length] + tuple(f"col{i}" for i in range(len(ROW_FIELDS), length))


def compare_candles(
    path: str, primary: Sequence[Any], candidate: Sequence[Any], options: CompareOptions
) -> list[Difference]:
    """The differences between two candle lists at `path` (see the module docstring)."""
    p, c = Candles.read(primary), Candles.read(candidate)
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
    if p.keys == c.keys and len(set(p.keys)) == len(p.keys):
        # The usual answer: the same timestamps in the same order, none repeated. The candles
        # pair by position; none is repeated, missing, extra, shifted or out of order.
        differences: list[Difference] = []
        pairs = [(i, i) for i in range(len(p.keys))]
        missing: list[int] = []
        extra: list[int] = []
    else:
        differences = _duplicates(path, p, c)
        p_at, c_at = _first_at(p.keys), _first_at(c.keys)
        if p_at.keys() != c_at.keys():
            votes = _shift_votes(p, c, p_at, c_at, options, field_path)
            # No shift wins without votes from at least half the candles: skip the search then.
            needed = max(votes.get(0, 0) + 1, (min(len(p_at), len(c_at)) + 1) // 2)
            found = (best_shift(p_at, c_at, lambda s: votes.get(s, 0), scoring=votes)
                     if max(votes.values(), default=0) >= needed else None)
            if found is not None:
                shift = found[0]
                first = min(p_at[k] for k in p_at if k + shift in c_at)
                differences.append(
                    shift_difference(
                        field_path(first, p.time_field),
                        p.raw_times[first],
                        c.raw_times[c_at[p.keys[first] + shift]],
                        shift / 1000,
                        "candles",
                    )
                )
        pairs = [(i, c_at[k + shift]) for k, i in p_at.items() if k + shift in c_at]
        if shift:
            missing = [i for k, i in p_at.items() if k + shift not in c_at]
            extra = [j for k, j in c_at.items() if k - shift not in p_at]
        else:
            missing = list(map(p_at.__getitem__, p_at.keys() - c_at.keys()))
            extra = list(map(c_at.__getitem__, c_at.keys() - p_at.keys()))
    differences += _missing(path, p, missing, Kind.MISSING)
    differences += _missing(path, c, extra, Kind.EXTRA)
    differences += _order(path, pairs, p, c)
    if not shift:
        differences += _notation(pairs, p, c, field_path)
    fields = sorted(({*p.rows[0]} if p.rows else set()) | ({*c.rows[0]} if c.rows else set()))
    fields = [f for f in fields if f not in (p.time_field, c.time_field)]
    if p.time_field != c.time_field and pairs:
        i, j = pairs[0]
        differences.append(
            Difference(
                field_path(i, p.time_field),
                Kind.MISSING,
                p.raw_times[i],
                c.raw_times[j],
                f"candle time field {p.time_field!r} vs {c.time_field!r}",
            )
        )
    differences += compare_columns(
        field_path, pairs, p.rows, c.rows, fields, options, noun="candles"
    )
    return differences


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
    p_at: dict[int, int],
    c_at: dict[int, int],
    options: CompareOptions,
    field_path: Callable[[int, str], str],
) -> Counter[int]:
    """For every shift, how many of the primary's candles (the first of each timestamp) carry
    the same values as the candidate's candle (the first of its timestamp) that much later: the
    score of `best_shift`, counted once for all shifts from the pairs whose closes agree."""
    matches = _value_matcher(p, c, options, field_path)
    firsts_p, firsts_c = sorted(p_at.values()), sorted(c_at.values())
    rtol, atol = field_tolerance(options, field_path(0, "close"), "close")
    votes: Counter[int] = Counter()
    for a, b in near_pairs(
        [p.rows[i].get("close") for i in firsts_p],
        [c.rows[j].get("close") for j in firsts_c],
        rtol,
        atol,
    ):
        i, j = firsts_p[a], firsts_c[b]
        if matches(i, j):
            votes[c.keys[j] - p.keys[i]] += 1
    return votes


def _value_matcher(
    p: Candles, c: Candles, options: CompareOptions, field_path: Callable[[int, str], str]
) -> Callable[[int, int], bool]:
    """Do primary candle i and candidate candle j carry the same OHLCV values?"""
    tolerances = {
        name: field_tolerance(options, field_path(0, name), name) for name in VALUE_FIELDS
    }

    def matches(i: int, j: int) -> bool:
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


def _order(path: str, pairs: list[tuple[int, int]], p: Candles, c: Candles) -> list[Difference]:
    """One difference when the aligned candles come in another order."""
    order = [j for _, j in pairs]
    if order == sorted(order):  # the indexes are distinct: sorted is strictly increasing
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
    pairs: list[tuple[int, int]], p: Candles, c: Candles, field_path: Callable[[int, str], str]
) -> list[Difference]:
    """The same instants written another way (``Z`` vs ``+00:00``, s vs ms): one difference."""
    if pairs:
        p_index, c_index = zip(*pairs, strict=True)
        p_times = list(map(p.raw_times.__getitem__, p_index))
        c_times = list(map(c.raw_times.__getitem__, c_index))
        if p_times == c_times and list(map(type, p_times)) == list(map(type, c_times)):
            return []
    for i, j in pairs:
        a, b = p.raw_times[i], c.raw_times[j]
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
