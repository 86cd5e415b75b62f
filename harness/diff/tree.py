"""The generic tree diff (the `json` comparator's whole work, registered by `comparators.generic`)
and the helpers every domain comparator builds on: status code, the headers that matter, and
JSON bodies diffed under our path syntax with numeric tolerance, ignore globs and order-free
lists. Non-JSON bodies are compared as text or bytes.

How bodies are diffed, fastest first:

- byte-identical raw bodies, or trees that are equal and serialize the same (orjson; with sorted
  keys when only the member order differs), are done at once;
- otherwise a walk descends only into the members and items that differ (C-level ``==`` plus
  orjson bytes prune equal subtrees; ``==`` alone would take ``true`` for ``1``) and compares
  leaves under the tolerance ``|a − b| <= atol + rtol·max(|a|, |b|)``;
- long numeric lists (equity curves, series) are compared with numpy in one step, and lists of
  many differing records (candles, trades) column by column, numeric columns with numpy (in
  Python when only a few numbers differ: numpy's fixed cost would be most of the work);
- a reordered list is one ORDER difference; a list whose items shifted, or whose length changed,
  is aligned on the items both sides share (symmetric: swapping primary and candidate names the
  same paths) and reported as the items missing and extra;
- lists named by an ``unordered`` glob are compared as multisets: equal multisets at once, the
  rest by deepdiff (``ignore_order``, pairing near-equal items under the same tolerance).

Big differences are summarised (unless ``summarise=False``): a member differing in many items of a
list is one difference saying how many, many items missing or extra is one LENGTH difference.
Messages are written only for the differences kept.

deepdiff walks every node of both trees (measured: 25–70 comparisons/s on 6–15 KB Cryptobot
bodies), which is why it is kept for the one job it does best, pairing order-free items.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import operator
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from typing import Any

import numpy as np
import orjson
from deepdiff import DeepDiff
from deepdiff.model import DiffLevel
from deepdiff.operator import BaseOperator

from harness.diff import paths
from harness.diff.base import CompareOptions, Incomparable, Lifted
from harness.diff.values import (
    changed_message,
    is_number,
    json_type,
    number_message,
    type_message,
    within,
)
from harness.model import Difference, Kind, Severity

# Headers compared by default: the ones a client acts on. Everything else (date, server, request
# ids, timings, content-length, etag, rate limits, set-cookie, the proxies' own headers) differs
# between any two deployments or requests; a route adds names with `extra.headers`. Transport
# details are left out on purpose: content-encoding (bodies are compared decoded) and
# transfer-encoding/connection.
COMPARED_HEADERS = frozenset(
    {
        "content-type", "cache-control", "location", "www-authenticate", "content-disposition",
        "content-language", "allow", "access-control-allow-origin",
        "access-control-allow-methods", "access-control-allow-headers",
        "access-control-allow-credentials", "access-control-expose-headers",
        "strict-transport-security", "x-content-type-options", "x-frame-options",
        "content-security-policy",
    }
)
# A difference in these changes what a client does: a warning; the rest are informational.
IMPORTANT_HEADERS = frozenset(
    {"content-type", "location", "www-authenticate", "access-control-allow-origin"}
)
# A list with more items added or removed than this is described by its length, not per item.
MAX_ITEM_FINDINGS = 5
# Numeric lists at least this long are compared with numpy, in one difference.
NUMERIC_ARRAY_MIN = 32
# Lists of records (dicts with the same members) at least this long are compared by column.
RECORDS_MIN = 8
# Table columns with at most this many unequal numbers in all are compared in Python: numpy
# costs ~20 µs a call, Python ~0.3 µs a number.
PYTHON_MAX_NUMBERS = 48
_EXACT_FLOAT_INT = 2**53
_NUMBER_TYPES = frozenset({int, float})
_EXACT_TYPES = frozenset({str, bool, type(None)})  # equal exactly when ==, whatever the type
_CONTAINER_TYPES = frozenset({dict, list})
_INFINITY = float("inf")
_FIRST = operator.itemgetter(0)


# --- status and headers ----------------------------------------------------------------------


def compare_status(primary: Lifted, candidate: Lifted) -> list[Difference]:
    """A different status code is always critical."""
    if primary.status == candidate.status:
        return []
    return [
        Difference(
            "@status",
            Kind.CHANGED,
            primary.status,
            candidate.status,
            f"status {primary.status} vs {candidate.status}",
            Severity.CRITICAL,
        )
    ]


def compared_headers(options: CompareOptions) -> frozenset[str]:
    """The header names a route compares: the defaults plus `extra.headers`, minus
    `ignore_headers`."""
    extra = options.extra.get("headers", ()) if options.extra else ()
    ignored = {h.lower() for h in options.ignore_headers}
    if not extra and not ignored:
        return COMPARED_HEADERS
    return frozenset((COMPARED_HEADERS | {h.lower() for h in extra}) - ignored)


def _media_type(values: list[str] | None) -> str | None:
    if not values:
        return None
    return values[0].split(";", 1)[0].strip().lower()


def compare_headers(
    primary: Lifted, candidate: Lifted, options: CompareOptions
) -> list[Difference]:
    """Differences in the headers that matter (see `COMPARED_HEADERS`); content-type is compared
    by media type only (a charset parameter is not a difference)."""
    if not options.compare_headers:
        return []
    differences = []
    wanted = compared_headers(options)
    present = [n for n in primary.headers if n in wanted]
    present += [n for n in candidate.headers if n in wanted and n not in primary.headers]
    for name in sorted(present):
        p_values, c_values = primary.headers.get(name), candidate.headers.get(name)
        if p_values == c_values:
            continue
        if name == "content-type":
            p_value, c_value = _media_type(p_values), _media_type(c_values)
        else:
            p_value = ", ".join(p_values) if p_values else None
            c_value = ", ".join(c_values) if c_values else None
        if p_value == c_value:
            continue
        path = f"@headers.{name}"
        if c_value is None:
            kind, message = Kind.MISSING, f"header {name} missing from the candidate's answer"
        elif p_value is None:
            kind, message = Kind.EXTRA, f"header {name} only in the candidate's answer"
        else:
            kind, message = Kind.CHANGED, f"header {name}: {p_value!r} vs {c_value!r}"
        severity = Severity.WARNING if name in IMPORTANT_HEADERS else Severity.INFO
        differences.append(Difference(path, kind, p_value, c_value, message, severity))
    return differences


# --- numbers and values --------------------------------------------------------------------


def _category(value: Any) -> str:
    """The JSON type, with int and float one kind (1 and 1.0 are the same JSON number)."""
    kind = json_type(value)
    return "number" if kind == "integer" else kind


def _canonical(value: Any) -> bytes | None:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return None


def _item_key(value: Any) -> Any:
    """A hashable identity of a list item (canonical JSON; repr when orjson cannot dump it)."""
    canonical = _canonical(value)
    return canonical if canonical is not None else repr(value)


def _item_keys(items: Sequence[Any]) -> list[Any]:
    """`_item_key` of every item (in one C-level pass when orjson can dump them all)."""
    try:
        return [orjson.dumps(item, option=orjson.OPT_SORT_KEYS) for item in items]
    except (TypeError, orjson.JSONEncodeError):
        return list(map(_item_key, items))


def same(a: Any, b: Any) -> bool:
    """Equal as JSON, fast: identity, C-level ``==``, and for containers the serialized bytes
    (``==`` alone would take ``true`` for ``1``). False means "maybe different: walk it"."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b) or a != b:
        return False
    if kind is dict or kind is list:
        try:
            return orjson.dumps(a) == orjson.dumps(b)
        except (TypeError, orjson.JSONEncodeError):
            return False
    return True


def _all_numbers(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """Both lists hold only numbers that floats represent exactly (no bools)."""
    if a and type(a[0]) is not float and type(a[0]) is not int:
        return False  # a table's text and object columns, told at their first item
    types = set(map(type, a))
    types.update(map(type, b))
    if not types <= _NUMBER_TYPES:
        return False
    if int not in types:
        return True
    low: int
    high: int
    if float not in types:  # integers only: their extremes in C
        low, high = min(min(a), min(b)), max(max(a), max(b))
    else:
        integers = [v for v in (*a, *b) if type(v) is int]
        low, high = min(integers), max(integers)
    return low > -_EXACT_FLOAT_INT and high < _EXACT_FLOAT_INT


def _mismatch_mask(pa: np.ndarray, pb: np.ndarray, rtol: float,
                   atol: float) -> tuple[np.ndarray, np.ndarray]:
    """(where `pa` and `pb` differ past the tolerance, the relative deviation everywhere)."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        scale = np.maximum(np.abs(pa), np.abs(pb))
        delta = np.abs(pa - pb)
        # NaN and infinities fail this test; they are sorted out below, where they are rare.
        bad = ~(delta <= atol + rtol * scale)
        if bad.any():
            bad &= ~((pa == pb) | (np.isnan(pa) & np.isnan(pb)))
        infinite = np.isinf(scale)
        if infinite.any():  # an infinity equals only itself: no tolerance can make it close
            bad |= infinite & (pa != pb)
        return bad, delta / scale


def _column_mismatches(pa: np.ndarray, pb: np.ndarray, rtol: float,
                       atol: float) -> list[list[int]]:
    """For each row of two 2-D arrays, the indexes `_mismatch_mask` finds past the tolerance;
    in fewer numpy calls when every value is finite (the usual table)."""
    with np.errstate(invalid="ignore", over="ignore"):
        if np.isfinite(pa).all() and np.isfinite(pb).all():
            bad = ~(np.abs(pa - pb) <= atol + rtol * np.maximum(np.abs(pa), np.abs(pb)))
            bad &= pa != pb
        else:
            bad, _ = _mismatch_mask(pa, pb, rtol, atol)
    return [list(compress(range(len(row)), row)) for row in bad.tolist()]


def _text_column(a: Sequence[Any], b: Sequence[Any]) -> set[type] | None:
    """``{str}`` when both columns hold only text (told by joining them, at C speed, instead of
    reading every value's type), else None (not known)."""
    if a and type(a[0]) is str:
        try:
            "".join(a)
            "".join(b)
        except TypeError:
            return None
        return {str}
    return None


def _finite_mismatches(a: Sequence[Any], b: Sequence[Any], unequal: list[int], rtol: float,
                       atol: float) -> list[int] | None:
    """`_mismatch_mask`'s indexes for two columns of numbers, of which the `unequal` indexes
    differ (the same float arithmetic, in Python); None when a value is not finite (numpy sorts
    those out)."""
    a = [float(a[j]) for j in unequal]  # as numpy reads them
    b = [float(b[j]) for j in unequal]
    if not (math.isfinite(sum(a)) and math.isfinite(sum(b))):
        return None
    return [j for j, x, y in zip(unequal, a, b, strict=True)
            if not abs(x - y) <= atol + rtol * max(abs(x), abs(y))]


def _numeric_compare(a: Sequence[Any], b: Sequence[Any], rtol: float,
                     atol: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(indexes past the tolerance, their relative deviations), or None (not numeric lists)."""
    if not _all_numbers(a, b):
        return None
    bad, rel = _mismatch_mask(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol,
                              atol)
    where = np.flatnonzero(bad)
    return where, rel[where]


# --- the walk ------------------------------------------------------------------------------


class _Differ:
    """One comparison of two JSON trees. Differences are collected without their messages; the
    messages are written at the end, for the ones kept (summarising drops most of a big diff)."""

    __slots__ = ("atol", "found", "ignored", "notes", "rtol", "summarise", "unordered")

    def __init__(self, options: CompareOptions, *, summarise: bool = True) -> None:
        self.rtol, self.atol = options.tol(0.0, 0.0)
        # None when no glob is given: tested as often as there are paths.
        self.ignored = paths.matcher(options.ignore) or None
        self.unordered = paths.matcher(options.unordered) or None
        self.summarise = summarise
        self.found: list[Difference] = []
        self.notes: dict[int, str] = {}  # id(difference) → what its message adds

    def add(self, path: str, kind: Kind, a: Any, b: Any, message: str = "") -> None:
        if not (self.ignored and self.ignored(path)):
            self.found.append(Difference(path, kind, a, b, message))

    def _note(self, diff: Difference, text: str) -> None:
        """Add `text` to what `diff`'s message will say (after its own description)."""
        self.notes[id(diff)] = self.notes.get(id(diff), "") + text

    def finish(self) -> list[Difference]:
        """The differences, with their messages."""
        # A drift repeats the same pair of numbers item after item: each pair's words written once.
        numbers: dict[tuple[type, float, type, float], str] = {}  # (types and values of a pair)
        notes = self.notes
        for diff in self.found:
            if not diff.message:
                a, b = diff.primary, diff.candidate
                if (diff.kind is Kind.CHANGED and a and b  # ±0.0 are equal but read apart
                        and (type(a) is float or type(a) is int)
                        and (type(b) is float or type(b) is int)):
                    key = (type(a), a, type(b), b)
                    where = diff.path or "body"
                    words = numbers.get(key)
                    if words is None:  # what follows the path: "0.02 vs 0.0200001 (rel ...)"
                        words = numbers[key] = number_message(
                            where, a, b, self.rtol, self.atol)[len(where):]  # as `describe`
                    diff.message = where + words
                else:
                    diff.message = self.describe(diff)
            if notes and (note := notes.get(id(diff))):
                diff.message += note
        return self.found

    def describe(self, diff: Difference) -> str:
        where, a, b = diff.path, diff.primary, diff.candidate
        if diff.kind is Kind.MISSING:
            return f"{where} missing from the candidate's answer"
        if diff.kind is Kind.EXTRA:
            return f"{where} only in the candidate's answer"
        if diff.kind is Kind.TYPE:
            return type_message(where, a, b)
        if is_number(a) and is_number(b):
            return number_message(where, a, b, self.rtol, self.atol)
        return changed_message(where, a, b)

    def walk(self, a: Any, b: Any, where: str) -> None:
        """Record the differences between `a` and `b` (which may differ) at `where`."""
        if self.ignored and self.ignored(where):
            return
        if isinstance(a, dict) and isinstance(b, dict):
            self._members(a, b, where)
        elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
            if self.unordered and self.unordered(where):
                self._multiset(a, b, where)
            elif len(a) == len(b):
                self._positional(a, b, where)
            else:
                self._aligned(a, b, where)
        else:
            self._leaf(a, b, where)

    def _members(self, a: dict[str, Any], b: dict[str, Any], where: str) -> None:
        for name, value in a.items():
            if name in b:
                other = b[name]
                if same(value, other):
                    continue
                if type(value) is float and type(other) is float:  # `walk` of two floats
                    if not (((delta := abs(value - other))
                             <= self.atol + self.rtol * (scale := max(abs(value), abs(other)))
                             and (delta < _INFINITY or scale < _INFINITY))
                            or (value != value and other != other)):
                        self.add(paths.key(where, name), Kind.CHANGED, value, other)
                else:
                    self.walk(value, other, paths.key(where, name))
            else:
                self.add(paths.key(where, name), Kind.MISSING, value, None)
        for name, value in b.items():
            if name not in a:
                self.add(paths.key(where, name), Kind.EXTRA, None, value)

    def record_pairs(self, items: list[tuple[Any, Any, str]]
                     ) -> list[tuple[int, Difference]] | None:
        """`walk` of every ``(a, b, path)`` when all are objects with the same members (the
        primary's in one order): member by member over all of them, equal members skipped at C
        speed. The differences found as (item, difference), by item (each item's in `walk`'s
        order); None when the items are not such records."""
        rows_a = [a for a, _, _ in items]
        rows_b = [b for _, b, _ in items]
        if type(rows_a[0]) is not dict:
            return None
        names = tuple(rows_a[0])
        if not names:
            return None
        # Reading a text key from an item that is not an object raises (below); other names: the
        # type of every item is checked here.
        if not all(type(name) is str for name in names) and (
                set(map(type, rows_a)) != {dict} or set(map(type, rows_b)) != {dict}):
            return None
        getter = operator.itemgetter(*names)
        try:  # the primary's members in one order, as many in the candidate's, all present
            if set(map(tuple, rows_a)) != {names} or set(map(len, rows_b)) != {len(names)}:
                return None
            table_b = list(map(getter, rows_b))
            table_a = list(map(getter, rows_a))
        except (KeyError, TypeError):  # an item without a name, or not an object
            return None
        columns: list[tuple[Sequence[Any], Sequence[Any]]]
        if len(names) == 1:
            columns = [(table_a, table_b)]
        else:
            columns = list(zip(zip(*table_a, strict=True), zip(*table_b, strict=True),
                               strict=True))
        item_paths = [path for _, _, path in items]
        ignored = self.ignored
        skipped: list[bool] | None = list(map(ignored, item_paths)) if ignored else None
        if skipped is not None and not any(skipped):
            skipped = None
        rtol, atol = self.rtol, self.atol
        found: list[tuple[int, Difference]] = []
        columns_found = 0  # how many columns added differences (more than one: sort by item)
        for name, (column_a, column_b) in zip(names, columns, strict=True):
            if column_a == column_b:
                kinds = list(map(type, column_a))
                if kinds == list(map(type, column_b)) and dict not in kinds and list not in kinds:
                    continue  # equal scalars of one type, item by item: `same` says so too
            rows = _unequal_items(column_a, column_b)
            if skipped is not None:
                rows = [i for i in rows if not skipped[i]]
            if not rows:
                continue
            sub_paths = list(map(paths.key, [item_paths[i] for i in rows], repeat(name)))
            if len(rows) >= RECORDS_MIN and type(column_a[rows[0]]) is dict:
                below = self.record_pairs([(column_a[i], column_b[i], path)
                                           for i, path in zip(rows, sub_paths, strict=True)])
                if below is not None:
                    if below:
                        columns_found += 1
                        found += [(rows[k], diff) for k, diff in below]
                    continue
            if ignored is not None:
                shown = list(compress(range(len(rows)), map(operator.not_,
                                                            map(ignored, sub_paths))))
                if len(shown) < len(rows):
                    rows = [rows[k] for k in shown]
                    sub_paths = [sub_paths[k] for k in shown]
            mark = len(found)
            for i, path in zip(rows, sub_paths, strict=True):
                a, b = column_a[i], column_b[i]
                kind_a, kind_b = type(a), type(b)
                if kind_a is float and kind_b is float:  # `within`, inline for two floats
                    if not (a == b
                            or ((delta := abs(a - b)) <= atol + rtol * max(abs(a), abs(b))
                                and (delta < _INFINITY or max(abs(a), abs(b)) < _INFINITY))
                            or (a != a and b != b)):
                        found.append((i, Difference(path, Kind.CHANGED, a, b, "")))
                    continue
                if (kind_a is float or kind_a is int) and (kind_b is float or kind_b is int):
                    if not within(a, b, rtol, atol):  # `walk` of two numbers
                        found.append((i, Difference(path, Kind.CHANGED, a, b, "")))
                    continue
                before = len(self.found)
                self.walk(a, b, path)
                if len(self.found) > before:
                    found += [(i, diff) for diff in self.found[before:]]
                    del self.found[before:]
            columns_found += len(found) > mark
        if columns_found > 1:  # stable: each item's differences stay in member order
            found.sort(key=_FIRST)
        return found

    def _leaf(self, a: Any, b: Any, where: str) -> None:
        kind_a, kind_b = type(a), type(b)
        if ((kind_a is float or kind_a is int) and (kind_b is float or kind_b is int)) or (
                is_number(a) and is_number(b)):
            if not within(a, b, self.rtol, self.atol):
                self.add(where, Kind.CHANGED, a, b)
        elif _category(a) != _category(b):
            self.add(where, Kind.TYPE, a, b)
        elif a != b:
            self.add(where, Kind.CHANGED, a, b)

    def _positional(self, a: Sequence[Any], b: Sequence[Any], where: str) -> None:
        """Same length: item by item (many differing records column by column). A mere
        reordering is one ORDER difference; a list whose items shifted (one inserted, one
        removed) is described by the alignment instead; the same member differing in many items
        is one difference saying how many."""
        if len(a) >= NUMERIC_ARRAY_MIN and self._numeric(a, b, where):
            return
        unequal = _unequal_items(a, b)
        if not unequal:
            return
        changed = len(unequal)
        # Reordered or shifted is decided on whole items: what `ignore` hides does not matter.
        if changed >= 2 and _may_have_moved(a, b, unequal):
            keys_a, keys_b = _item_keys(a), _item_keys(b)
            if Counter(keys_a) == Counter(keys_b):
                self.add(where, Kind.ORDER, None, None,
                         f"{where or 'body'}: same {len(a)} items in another order")
                return
            if changed > MAX_ITEM_FINDINGS:
                alignment = _Alignment(keys_a, keys_b)
                if alignment.in_order and alignment.unmatched < changed:
                    self._report_alignment(a, b, where, alignment)
                    return
        mark = len(self.found)
        tails: dict[str, list[tuple[str, Difference]]] = {}
        if changed < RECORDS_MIN or not self._columns(a, b, unequal, where, tails):
            for i in unequal:
                item = paths.index(where, i)
                before = len(self.found)
                self.walk(a[i], b[i], item)
                self._file(tails, item, before)
        if self.summarise:
            self._summarise_tails(mark, tails, len(a), where)

    def _file(self, tails: dict[str, list[tuple[str, Difference]]], item: str, before: int) -> None:
        """File the differences found since `before` under their (generalized) path below
        `item`."""
        for diff in self.found[before:]:
            tails.setdefault(paths.generalize(diff.path[len(item):]), []).append((item, diff))

    def _columns(self, a: Sequence[Any], b: Sequence[Any], rows: list[int], where: str,
                 tails: dict[str, list[tuple[str, Difference]]]) -> bool:
        """Records (dicts with the same members) compared column by column over `rows`: numeric
        columns with numpy (few unequal numbers in Python), same-typed scalar columns in one pass,
        the rest item by item.
        False when the items are not records."""
        if len(rows) == len(a):
            items_a, items_b = a, b
        else:
            items_a, items_b = [a[i] for i in rows], [b[i] for i in rows]
        if type(items_a[0]) is not dict:
            return False
        names = list(items_a[0])
        # Reading a text key from an item that is not an object raises (below); other names: the
        # type of every item is checked here.
        if (not names or not all(type(name) is str for name in names)) and (
                set(map(type, items_a)) != {dict} or set(map(type, items_b)) != {dict}):
            return False
        columns: list[tuple[Sequence[Any], Sequence[Any]]]
        try:  # same number of members and every name present: the same members
            if set(map(len, items_a)) != {len(names)} or set(map(len, items_b)) != {len(names)}:
                return False
            if not names:
                return True  # empty records: nothing to compare
            if len(names) <= 4:  # a few long columns: read one by one, faster than a transpose
                getters = list(map(operator.itemgetter, names))
                columns = [(list(map(get, items_a)), list(map(get, items_b))) for get in getters]
            else:
                getter = operator.itemgetter(*names)
                table_a, table_b = list(map(getter, items_a)), list(map(getter, items_b))
                columns = list(zip(zip(*table_a, strict=True), zip(*table_b, strict=True),
                                   strict=True))
        except (KeyError, TypeError):  # an item without a name, or not an object
            return False
        numeric = [k for k, (ca, cb) in enumerate(columns) if _all_numbers(ca, cb)]
        mismatches: dict[int, list[int]] = {}
        if numeric and not self.rtol and not self.atol:
            numeric = self._exact_numbers(columns, numeric, mismatches)
        if numeric:  # few unequal numbers: numpy's fixed cost would be most of the work
            unequal: dict[int, list[int]] = {}
            count = 0
            for k in numeric:
                unequal[k] = list(compress(range(len(rows)), map(operator.ne, *columns[k])))
                count += len(unequal[k])
                if count > PYTHON_MAX_NUMBERS:
                    break
            else:
                for k in numeric:
                    found = _finite_mismatches(*columns[k], unequal[k], self.rtol, self.atol)
                    if found is None:
                        break
                    mismatches[k] = found
                else:
                    numeric = []
        if numeric:  # all numeric columns in one numpy comparison
            found_by_row = _column_mismatches(
                np.array([columns[k][0] for k in numeric], dtype=float),
                np.array([columns[k][1] for k in numeric], dtype=float), self.rtol, self.atol)
            mismatches.update(zip(numeric, found_by_row, strict=True))
        for k, (name, (column_a, column_b)) in enumerate(zip(names, columns, strict=True)):
            bad = mismatches.get(k)
            exact = bad is not None
            if not exact:
                kinds = _text_column(column_a, column_b)
                if kinds is None:
                    kinds = set(map(type, column_a))
                    kinds.update(map(type, column_b))
                exact = len(kinds) == 1 and kinds <= _EXACT_TYPES
                pairs = enumerate(zip(column_a, column_b, strict=True))
                if column_a == column_b and kinds.isdisjoint(_CONTAINER_TYPES) and (
                        exact or list(map(type, column_a)) == list(map(type, column_b))):
                    bad = []  # equal scalars of one type, item by item: `same` says so too
                else:
                    bad = (list(compress(range(len(column_a)), map(operator.ne, column_a,
                                                                   column_b))) if exact
                           else [j for j, (x, y) in pairs if not same(x, y)])
            if not bad:
                continue
            if exact and self.summarise and len(bad) > MAX_ITEM_FINDINGS:
                self._column_summary(column_a, column_b, bad, rows, name, where, len(a))
                continue
            for j in bad:
                item = paths.index(where, rows[j])
                before = len(self.found)
                self.walk(column_a[j], column_b[j], paths.key(item, name))
                self._file(tails, item, before)
        return True

    @staticmethod
    def _exact_numbers(columns: list[tuple[Sequence[Any], Sequence[Any]]], numeric: list[int],
                       mismatches: dict[int, list[int]]) -> list[int]:
        """Without a tolerance, numbers (exact in floats) differ exactly where ``!=`` says so,
        NaN beside NaN aside: `_mismatch_mask` with no numpy, for every column of `numeric`
        holding only finite numbers (their mismatches filed in `mismatches`). The columns left
        for `_mismatch_mask`."""
        rest = []
        for k in numeric:
            column_a, column_b = columns[k]
            if column_a == column_b:  # each pair the same number (or the same NaN object)
                mismatches[k] = []
                continue
            # A finite sum: no NaN, no infinity (an overflowing sum only sends it the long way).
            if math.isfinite(sum(column_a)) and math.isfinite(sum(column_b)):
                mismatches[k] = list(compress(range(len(column_a)),
                                              map(operator.ne, column_a, column_b)))
            else:
                rest.append(k)
        return rest

    def _column_summary(self, column_a: Sequence[Any], column_b: Sequence[Any],
                        bad: list[int], rows: list[int], name: str, where: str,
                        total: int) -> None:
        """One difference for a column that differs in many items (the first one kept); `bad`
        holds rows of the column, `rows` each row's index in the list."""
        def path(i: int) -> str:
            return paths.key(paths.index(where, i), name)

        if self.ignored:
            bad = [j for j in bad if not self.ignored(path(rows[j]))]
            count = len(bad)
            if count <= MAX_ITEM_FINDINGS:
                for j in bad:
                    self._leaf(column_a[j], column_b[j], path(rows[j]))
                return
        count = len(bad)
        before = len(self.found)
        for j in bad:  # the first that the exact comparison also calls different
            self._leaf(column_a[j], column_b[j], path(rows[j]))
            if len(self.found) > before:
                break
        else:
            return
        tail = paths.key("", name)
        tail = tail if tail.startswith("[") else "." + tail
        self._note(self.found[-1], f"; {count} of {total} items of {where or 'body'} "
                                   f"differ at [*]{tail}")

    def _summarise_tails(self, mark: int, tails: dict[str, list[tuple[str, Difference]]],
                         total: int, where: str) -> None:
        """The same member differing in more than MAX_ITEM_FINDINGS items: keep the first item's
        differences there, and say in the first one's message how many items differ there."""
        dropped: set[int] = set()
        for tail, filed in tails.items():
            items = list(dict.fromkeys(item for item, _ in filed))
            if len(items) <= MAX_ITEM_FINDINGS:
                continue
            for item, diff in filed:
                if item != items[0]:
                    dropped.add(id(diff))
                    self.notes.pop(id(diff), None)  # ids are reused once the object is gone
            self._note(filed[0][1], f"; {len(items)} of {total} items of {where or 'body'} "
                                    f"differ at [*]{tail}")
        if dropped:
            self.found[mark:] = [d for d in self.found[mark:] if id(d) not in dropped]

    def _numeric(self, a: Sequence[Any], b: Sequence[Any], where: str) -> bool:
        """Compare two numeric lists with numpy; False when they are not both all numbers."""
        found = _numeric_compare(a, b, self.rtol, self.atol)
        if found is None:
            return False
        bad, rel = found
        if self.ignored and bad.size:
            keep = np.array([not self.ignored(paths.index(where, int(i))) for i in bad],
                            dtype=bool)
            bad, rel = bad[keep], rel[keep]
        bad = bad.tolist()
        if not bad:
            return True
        if not self.summarise:
            for i in bad:
                self.add(paths.index(where, i), Kind.CHANGED, a[i], b[i])
            return True
        first = bad[0]
        path = paths.index(where, first)
        message = number_message(path, a[first], b[first], self.rtol, self.atol)
        if len(bad) > 1:
            finite = rel[np.isfinite(rel)]
            message += f"; {len(bad)} of {len(a)} points differ from index {first}"
            if finite.size:
                message += f", max rel {float(finite.max()):.1e}"
        self.add(path, Kind.CHANGED, a[first], b[first], message)
        return True

    def _aligned(self, a: Sequence[Any], b: Sequence[Any], where: str) -> None:
        alignment = _Alignment(_item_keys(a), _item_keys(b))
        self._report_alignment(a, b, where, alignment)

    def _report_alignment(self, a: Sequence[Any], b: Sequence[Any], where: str,
                          alignment: _Alignment) -> None:
        if not alignment.in_order:
            self.add(where, Kind.ORDER, None, None,
                     f"{where or 'body'}: the {alignment.common} items both answers have are "
                     "in another order")
        for i, j in alignment.pairs:
            self.walk(a[i], b[j], paths.index(where, i))
        mark = len(self.found)
        for i in alignment.missing:
            self.add(paths.index(where, i), Kind.MISSING, a[i], None)
        for j in alignment.extra:
            self.add(paths.index(where, j), Kind.EXTRA, None, b[j])
        items = self.found[mark:]
        if self.summarise and len(items) > MAX_ITEM_FINDINGS:
            self.found[mark:] = _summarise_items(where, items, len(a), len(b))

    def _multiset(self, a: Sequence[Any], b: Sequence[Any], where: str) -> None:
        if Counter(_item_keys(a)) == Counter(_item_keys(b)):
            return
        self.found.extend(_deepdiff_unordered(a, b, where, self))


class _Alignment:
    """A symmetric alignment of two lists by item identity: the items both have (as many of each
    as both have, the first occurrences), and between them the ones only one side has. Items
    only one side has at the same index on both sides are paired and compared in depth."""

    __slots__ = ("common", "extra", "in_order", "missing", "pairs", "unmatched")

    def __init__(self, keys_a: list[Any], keys_b: list[Any]) -> None:
        shared = Counter(keys_a) & Counter(keys_b)
        marks_a, marks_b = _first_occurrences(keys_a, shared), _first_occurrences(keys_b, shared)
        self.common = sum(shared.values())
        skeleton_a = [k for k, m in zip(keys_a, marks_a, strict=True) if m]
        skeleton_b = [k for k, m in zip(keys_b, marks_b, strict=True) if m]
        self.in_order = skeleton_a == skeleton_b
        only_a = [i for i, m in enumerate(marks_a) if not m]
        only_b = [j for j, m in enumerate(marks_b) if not m]
        self.pairs: list[tuple[int, int]] = []
        if self.in_order:
            # Pair what sits in the same gap between shared items at the same index.
            gap_a = _gaps(marks_a)
            gap_b = _gaps(marks_b)
            set_b = {(gap_b[j], j) for j in only_b}
            self.pairs = [(i, i) for i in only_a if (gap_a[i], i) in set_b]
        paired = {i for i, _ in self.pairs}
        self.missing = [i for i in only_a if i not in paired]
        self.extra = [j for j in only_b if j not in paired]
        self.unmatched = len(self.missing) + len(self.extra) + len(self.pairs)


def _unequal_items(a: Sequence[Any], b: Sequence[Any]) -> list[int]:
    """Indexes of the items that differ (``not same``): unequal to C-level ``==``, or, when the
    equal rest does not serialize the same (``true`` vs ``1`` hides from ``==``), each checked
    exactly."""
    unequal = list(compress(range(len(a)), map(operator.ne, a, b)))
    if unequal and any(map(operator.is_, a, b)):  # one object is `same` even when != (NaN)
        unequal = [i for i in unequal if a[i] is not b[i]]
    if len(unequal) == len(a):
        return unequal
    kinds = list(map(type, a))
    if kinds == list(map(type, b)) and dict not in kinds and list not in kinds:
        return unequal  # the equal rest: scalars of one type, which `same` takes as equal
    rest_a: Sequence[Any]
    rest_b: Sequence[Any]
    if unequal:
        skip = set(unequal)
        rest_a = [x for i, x in enumerate(a) if i not in skip]
        rest_b = [y for i, y in enumerate(b) if i not in skip]
    else:
        rest_a, rest_b = a, b
    try:
        if orjson.dumps(rest_a) == orjson.dumps(rest_b):
            return unequal
    except (TypeError, orjson.JSONEncodeError):
        pass
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if not same(x, y)]


def _may_have_moved(a: Sequence[Any], b: Sequence[Any], unequal: list[int]) -> bool:
    """Cheap probe before aligning: could items have been reordered or shifted? Then the first
    differing item of one side sits at another index of the other (probed both ways, so that
    swapping the sides decides the same)."""
    first = unequal[0]
    return a[first] in b or b[first] in a


def _first_occurrences(keys: list[Any], shared: Counter[Any]) -> list[bool]:
    budget = dict(shared)
    marks = []
    for key in keys:
        left = budget.get(key, 0)
        marks.append(left > 0)
        if left > 0:
            budget[key] = left - 1
    return marks


def _gaps(marks: list[bool]) -> list[int]:
    """For each position, how many shared items precede it (its gap number)."""
    out, seen = [], 0
    for marked in marks:
        out.append(seen)
        seen += marked
    return out


def _summarise_items(
    list_path: str, items: list[Difference], p_len: int | None, c_len: int | None
) -> list[Difference]:
    if len(items) <= MAX_ITEM_FINDINGS:
        return items
    missing = sum(1 for d in items if d.kind is Kind.MISSING)
    extra = len(items) - missing
    return [
        Difference(
            list_path, Kind.LENGTH, p_len, c_len,
            f"{list_path or 'body'} has {p_len} vs {c_len} items "
            f"({missing} missing, {extra} extra; first at {items[0].path})",
        )
    ]


# --- order-free lists through deepdiff -----------------------------------------------------


class _Tolerance(BaseOperator):
    """deepdiff operator: numbers within rtol/atol are equal; ``true`` is not ``1``."""

    def __init__(self, rtol: float, atol: float) -> None:
        super().__init__(types=[int, float])
        self.rtol, self.atol = rtol, atol

    def match(self, level: DiffLevel) -> bool:
        return isinstance(level.t1, int | float) and isinstance(level.t2, int | float)

    def give_up_diffing(self, level: DiffLevel, diff_instance: DeepDiff) -> bool:
        a, b = level.t1, level.t2
        if isinstance(a, bool) or isinstance(b, bool):
            if type(a) is not type(b):
                # deepdiff leaves this method unannotated
                diff_instance.custom_report_result("type_changes", level)  # type: ignore[no-untyped-call]
                return True
            return False
        return within(a, b, self.rtol, self.atol)

    def normalize_value_for_hashing(self, parent: Any, obj: Any) -> Any:
        return obj  # order-free lists pair items by hash: numbers pair only when equal


def _path_from_list(base: str, keys: list[Any]) -> str:
    path = base
    for key in keys:
        path = paths.index(path, key) if isinstance(key, int) else paths.key(path, key)
    return path


def _deepdiff_unordered(a: Sequence[Any], b: Sequence[Any], where: str,
                        differ: _Differ) -> list[Difference]:
    unordered = differ.unordered

    def order_free(level: DiffLevel, *_: Any) -> bool:
        return unordered is not None and unordered(
            _path_from_list(where, level.path(output_format="list")))

    diff = DeepDiff(
        list(a), list(b), view="tree", ignore_nan_inequality=True,
        ignore_type_in_groups=[(int, float)], ignore_order_func=order_free,
        custom_operators=[_Tolerance(differ.rtol, differ.atol)],
        threshold_to_diff_deeper=0, verbose_level=2, log_frequency_in_sec=0,
    )
    found: list[Difference] = []
    items: dict[str, list[Difference]] = defaultdict(list)
    for report_type, levels in diff.tree.items():
        for level in levels:
            keys = level.path(output_format="list")
            path = _path_from_list(where, keys)
            if differ.ignored and differ.ignored(path):
                continue
            one = _from_deepdiff(report_type, path, level.t1, level.t2, differ)
            if one is None:
                continue
            if one.kind in (Kind.MISSING, Kind.EXTRA) and keys and isinstance(keys[-1], int):
                items[_path_from_list(where, keys[:-1])].append(one)
            else:
                found.append(one)
    for list_path, listed in items.items():
        if not differ.summarise:
            found.extend(listed)
        elif list_path == where:
            found.extend(_summarise_items(list_path, listed, len(a), len(b)))
        else:
            found.extend(_summarise_items(list_path, listed, None, None))
    return found


def _from_deepdiff(report_type: str, where: str, t1: Any, t2: Any,
                   differ: _Differ) -> Difference | None:
    """One deepdiff finding as our difference (its message is written by `_Differ.finish`)."""
    if report_type in ("dictionary_item_removed", "iterable_item_removed"):
        return Difference(where, Kind.MISSING, t1, None, "")
    if report_type in ("dictionary_item_added", "iterable_item_added"):
        return Difference(where, Kind.EXTRA, None, t2, "")
    if report_type in ("type_changes", "values_changed"):
        if is_number(t1) and is_number(t2):
            if within(t1, t2, differ.rtol, differ.atol):
                return None
            return Difference(where, Kind.CHANGED, t1, t2, "")
        if _category(t1) != _category(t2):
            return Difference(where, Kind.TYPE, t1, t2, "")
        return Difference(where, Kind.CHANGED, t1, t2, "") if t1 != t2 else None
    if report_type == "repetition_change":
        return Difference(where, Kind.LENGTH, t1, t2,
                          f"{where} repeated a different number of times")
    return None


# --- bodies --------------------------------------------------------------------------------


def compare_bodies(
    primary: Any, candidate: Any, options: CompareOptions, *, path: str = "",
    summarise: bool = True,
) -> list[Difference]:
    """Differences between two parsed JSON values, at paths under `path` (see the module
    docstring for how). With `summarise` (the default) a list with many items added or removed
    is one LENGTH difference and a member differing in many items of a list is one difference
    counting them; without it every difference is listed."""
    if same(primary, candidate):
        return []
    if primary == candidate:  # members in another order? Canonically equal is equal.
        canonical = _canonical(primary)
        if canonical is not None and canonical == _canonical(candidate):
            return []
    differ = _Differ(options, summarise=summarise)
    differ.walk(primary, candidate, path)
    return differ.finish()


def compare_many(
    items: Iterable[tuple[Any, Any, str]], options: CompareOptions
) -> list[Difference]:
    """`compare_bodies(a, b, options, path=path)` of every ``(a, b, path)``, concatenated, with
    one walk for them all (the items of a list matched by identity, not position)."""
    items = list(items)
    rows_a, rows_b = [a for a, _, _ in items], [b for _, b, _ in items]
    unequal = list(map(operator.ne, rows_a, rows_b))  # these are not ==: no second look
    differing = []
    for i in _unequal_items(rows_a, rows_b):
        primary, candidate, _ = item = items[i]
        if not unequal[i] and primary == candidate:  # members in another order? Canonically
            canonical = _canonical(primary)  # equal is equal.
            if canonical is not None and canonical == _canonical(candidate):
                continue
        differing.append(item)
    if not differing:
        return []
    differ = _Differ(options)
    if len(differing) >= RECORDS_MIN:  # many records differ: member by member over them all
        by_item = differ.record_pairs(differing)
        if by_item is not None:
            differ.found = [diff for _, diff in by_item]
            return differ.finish()
    for primary, candidate, path in differing:
        differ.walk(primary, candidate, path)
    return differ.finish()


def compare_text(primary: str, candidate: str) -> list[Difference]:
    """One difference for two different text bodies, with the first differing lines."""
    if primary == candidate:
        return []
    lines = list(difflib.unified_diff(
        primary.splitlines(), candidate.splitlines(), "primary", "candidate", n=0, lineterm=""
    ))[2:]
    if not lines:
        message = "text bodies differ in line endings or trailing whitespace"
    else:
        line = lines[0].split()[1].lstrip("-").split(",")[0]  # "@@ -2 +2 @@" → "2"
        hunk = []
        for text in lines[1:]:
            if text.startswith("@@"):
                break
            hunk.append(text[:80])
        more = sum(1 for text in lines if text.startswith("@@")) - 1
        message = f"text bodies differ at line {line}: " + " | ".join(hunk[:4])
        if more:
            message += f" (and {more} more place{'s' if more > 1 else ''})"
    return [Difference("", Kind.CHANGED, primary[:200], candidate[:200], message)]


def compare_bytes(primary: bytes, candidate: bytes) -> list[Difference]:
    """One difference for two different binary bodies (sizes and digests)."""
    if primary == candidate:
        return []

    def describe(raw: bytes) -> str:
        return f"{len(raw)} bytes sha256:{hashlib.sha256(raw).hexdigest()[:12]}"

    return [Difference("", Kind.CHANGED, describe(primary), describe(candidate),
                       f"binary bodies differ: {describe(primary)} vs {describe(candidate)}")]


def compare_any_bodies(
    primary: Lifted, candidate: Lifted, options: CompareOptions
) -> list[Difference]:
    """Bodies of any kind: JSON through `compare_bodies`, else text or bytes. Raises Incomparable
    when one side claimed JSON but did not parse and the bytes differ."""
    if primary.raw == candidate.raw:
        return []
    for side, lifted in (("primary", primary), ("candidate", candidate)):
        if lifted.parse_error:
            raise Incomparable(f"{side} body: {lifted.parse_error}")
    if primary.kind == "json" and candidate.kind == "json":
        return compare_bodies(primary.body, candidate.body, options)
    if candidate.kind == "empty":
        return [Difference("", Kind.MISSING, primary.kind, None,
                           f"the candidate's answer has no body (the primary's: {primary.kind}, "
                           f"{len(primary.raw)} bytes)")]
    if primary.kind == "empty":
        return [Difference("", Kind.EXTRA, None, candidate.kind,
                           f"only the candidate's answer has a body ({candidate.kind}, "
                           f"{len(candidate.raw)} bytes)")]
    if primary.kind != candidate.kind:
        return [Difference("", Kind.TYPE, primary.kind, candidate.kind,
                           f"body is {primary.kind} vs {candidate.kind}")]
    if primary.kind == "bytes":
        return compare_bytes(primary.raw, candidate.raw)
    return compare_text(primary.raw.decode("utf-8", "replace"),
                        candidate.raw.decode("utf-8", "replace"))


def compare_json(primary: Lifted, candidate: Lifted, options: CompareOptions) -> list[Difference]:
    """Status, headers and body of two answers."""
    differences = compare_status(primary, candidate)
    differences += compare_headers(primary, candidate, options)
    differences += compare_any_bodies(primary, candidate, options)
    return differences
