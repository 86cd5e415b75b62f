"""Values as every comparator sees them (one wording for all: a drift reads the same from `json`
as from `backtest`): numbers compared within a tolerance (`within`) and described the way a
reviewer would (`show`, `json_type`, `number_message`, `type_message`); and what the domain
comparators (backtest, order, auth, ohlcv, strategy) share: timestamps read from the shapes
Cryptobot uses, a constant-shift (timezone) search, and the envelope (status, headers, non-JSON
bodies) handed to the generic helpers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import operator
import sys
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from fractions import Fraction
from functools import lru_cache
from typing import Any, TypeGuard

import orjson

from harness.diff.base import CompareOptions, Lifted
from harness.diff.paths import matcher
from harness.model import Difference, Kind, Severity

DEFAULT_RTOL = 1e-9
DEFAULT_ATOL = 1e-12

BodyCompare = Callable[[Lifted, Lifted, CompareOptions], list[Difference]]


# --- numbers ---------------------------------------------------------------------------------


def is_number(value: Any) -> TypeGuard[int | float]:
    """True for JSON numbers (bool is not a number here)."""
    kind = type(value)
    if kind is float or kind is int:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool)


_PLAIN_COLUMN = frozenset({int, float, type(None)})


def numbers_or_nulls(values: Iterable[Any]) -> bool:
    """Whether every value is a number (not a bool) or null."""
    if not isinstance(values, list | tuple):
        values = values if isinstance(values, Sequence) else list(values)
    kinds = list(map(type, values))
    # (a column of floats, the usual one, is told by a count in C, before any set is built)
    return kinds.count(float) == len(kinds) or set(kinds) <= _PLAIN_COLUMN or all(
        v is None or is_number(v) for v in values
    )


def as_number(value: Any, *, strings: bool = False) -> float | None:
    """`value` as a float when it is a number (or, with `strings`, a numeric string), else None."""
    if is_number(value):
        return float(value)
    if strings and isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def within(a: float, b: float, rtol: float, atol: float) -> bool:
    """Symmetric closeness ``|a − b| <= atol + rtol·max(|a|, |b|)`` (swapping never matters);
    NaN equals NaN, an infinity equals only itself, integers without a tolerance exactly."""
    if a == b:
        return True
    if isinstance(a, float) or isinstance(b, float):
        try:
            fa, fb = float(a), float(b)
        except OverflowError:
            return False
        if fa != fa or fb != fb:  # NaN
            return fa != fa and fb != fb
        if math.isinf(fa) or math.isinf(fb):
            return False
        return abs(fa - fb) <= atol + rtol * max(abs(fa), abs(fb))
    if not rtol and not atol:
        return False
    try:
        return abs(a - b) <= atol + rtol * max(abs(a), abs(b))
    except OverflowError:  # integers past float range (parse_json keeps them exact): in fractions
        try:
            return Fraction(abs(a - b)) <= Fraction(atol) + Fraction(rtol) * max(abs(a), abs(b))
        except (OverflowError, ValueError):  # a tolerance that is no finite number
            return False


# --- how values read in a finding (one wording for every comparator) -------------------------


def json_type(value: Any) -> str:
    """The JSON type name of a value: null, boolean, integer, number, string, array, object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def show(value: Any, limit: int = 60) -> str:
    """A value as a reviewer reads it: numbers bare (``nan``, ``inf`` too), strings quoted, JSON
    otherwise, cut at `limit`."""
    kind = type(value)
    if kind is float:  # (the usual values first, by their exact type)
        text = repr(value)
    elif kind is str and '"' not in value and "\\" not in value:
        text = f'"{value}"'
    elif is_number(value):
        text = repr(value) if isinstance(value, float) else str(value)
    elif isinstance(value, str):
        text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        try:
            text = orjson.dumps(value).decode()
        except (TypeError, orjson.JSONEncodeError):
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_SIGNIFICANT = tuple(f".{digits}g" for digits in range(18))


def _distinct_digits(a: Any, b: Any) -> tuple[str, str]:
    """Both numbers with enough significant digits to tell them apart, and two more."""
    if isinstance(a, int) and isinstance(b, int):
        return str(a), str(b)
    short_a, short_b = repr(a), repr(b)
    if len(short_a) <= 10 and len(short_b) <= 10:
        return short_a, short_b
    start = 5
    try:  # as many digits as the relative difference needs, found in one or two steps
        rel = abs(a - b) / max(abs(a), abs(b))
        if 0 < rel < 1e-5:
            start = min(17, int(-math.log10(rel)))
    except (ArithmeticError, TypeError, ValueError):
        pass
    try:
        for digits in range(start, 18):
            spec = _SIGNIFICANT[digits]  # format(x, ".7g") is f"{x:.7g}", the spec not built
            if format(a, spec) != format(b, spec):
                keep = _SIGNIFICANT[min(digits + 2, 17)]
                long_a, long_b = format(a, keep), format(b, keep)
                # A shorter exact form (0.3, not 0.29999999999999999) reads better.
                return (short_a if len(short_a) < len(long_a) else long_a,
                        short_b if len(short_b) < len(long_b) else long_b)
    except OverflowError:  # an integer past float range (parse_json keeps them): as it is
        pass
    return short_a, short_b


_LARGEST_FLOAT = int(sys.float_info.max)


def number_message(where: str, a: Any, b: Any, rtol: float, atol: float) -> str:
    """``sharpe_ratio 1.2034 vs 1.1987 (rel 3.9e-03 > 1e-09)``: both numbers with the digits that
    tell them apart, and the tolerance they are outside of."""
    shown_a, shown_b = _distinct_digits(a, b)
    head = f"{where or 'body'} {shown_a} vs {shown_b}"
    try:
        delta = abs(a - b)
        scale = max(abs(a), abs(b))
        rel = delta / scale if scale else 0.0
    except (OverflowError, ZeroDivisionError, TypeError):
        return head
    # (an integer past float range, which parse_json keeps exact, is finite and too large for
    # the absolute allowance; it overflows where it meets a float)
    huge = type(delta) is int and abs(delta) > _LARGEST_FLOAT
    if not (math.isfinite(rel) and (huge or math.isfinite(delta))):
        return head
    reasons = [f"rel {rel:.1e} > {_tolerance(rtol)}"] if rtol else []
    if atol and not huge and (not rtol or atol >= rtol * scale):  # where it set the allowance
        reasons.append(f"abs {delta:.1e} > {_tolerance(atol)}")
    return f"{head} ({', '.join(reasons) or f'rel {rel:.1e}'})"


@lru_cache(maxsize=256, typed=True)  # a route's tolerances, in message after message
def _tolerance(value: float) -> str:
    return f"{value:g}"


def type_message(where: str, a: Any, b: Any) -> str:
    """``price: type changed integer → string (1 vs "1")``."""
    return (f"{where or 'body'}: type changed {json_type(a)} → {json_type(b)} "
            f"({show(a)} vs {show(b)})")


def changed_message(where: str, a: Any, b: Any) -> str:
    """``status "filled" vs "open"``."""
    return f"{where or 'body'} {show(a)} vs {show(b)}"


def compare_scalar(
    path: str,
    primary: Any,
    candidate: Any,
    rtol: float,
    atol: float,
    *,
    exact: bool = False,
    numeric_strings: bool = False,
) -> Difference | None:
    """One difference between two JSON scalars, or None when they agree.

    Numbers agree within (rtol, atol) unless `exact`; null is never 0; a number that became a
    string (or the reverse) is a type difference even when it reads the same.
    """
    if primary is None and candidate is None:
        return None
    if (primary is None) != (candidate is None) or isinstance(primary, bool) != isinstance(
        candidate, bool
    ):
        return _type_difference(path, primary, candidate)
    try:
        p_num = as_number(primary, strings=numeric_strings)
        c_num = as_number(candidate, strings=numeric_strings)
    except OverflowError:  # an integer past float range (parse_json keeps it exact): as it is
        p_num = primary if is_number(primary) else as_number(primary, strings=numeric_strings)
        c_num = candidate if is_number(candidate) else as_number(candidate,
                                                                 strings=numeric_strings)
    if p_num is not None and c_num is not None:
        if is_number(primary) != is_number(candidate):
            return _type_difference(path, primary, candidate)
        if exact:
            if p_num == c_num and type(primary) is type(candidate):
                return None
            if p_num == c_num:
                return _type_difference(path, primary, candidate)
            return _changed(path, primary, candidate)
        if within(p_num, c_num, rtol, atol):
            return None
        return Difference(path, Kind.CHANGED, primary, candidate,
                          number_message(path, primary, candidate, rtol, atol))
    if type(primary) is not type(candidate) and not (is_number(primary) and is_number(candidate)):
        return _type_difference(path, primary, candidate)
    if primary == candidate:
        return None
    return _changed(path, primary, candidate)


def _changed(path: str, primary: Any, candidate: Any) -> Difference:
    return Difference(path, Kind.CHANGED, primary, candidate,
                      changed_message(path, primary, candidate))


def _type_difference(path: str, primary: Any, candidate: Any) -> Difference:
    return Difference(path, Kind.TYPE, primary, candidate, type_message(path, primary, candidate))


def field_tolerance(options: CompareOptions, path: str, name: str) -> tuple[float, float]:
    """(rtol, atol) for one field: the route's tolerance, or a per-field override.

    ``options.extra["tolerances"]`` maps a field name or a path glob to ``{"rtol": r, "atol": a}``
    (or to a bare number, read as rtol): ``{"sharpe_ratio": {"rtol": 1e-6}}``.
    """
    rtol, atol = options.tol(DEFAULT_RTOL, DEFAULT_ATOL)
    overrides = options.extra.get("tolerances") or {}
    for pattern, spec in overrides.items():
        if pattern == name or matcher((pattern,))(path):
            if isinstance(spec, Mapping):
                rtol = float(spec.get("rtol", rtol))
                atol = float(spec.get("atol", atol))
            else:
                rtol = float(spec)
    return rtol, atol


# --- columns (equity curves, candles, trade tables) ------------------------------------------


def column_difference(
    path_of: Callable[[int], str],
    primary: Sequence[Any],
    candidate: Sequence[Any],
    rtol: float,
    atol: float,
    *,
    what: str,
    noun: str = "points",
    positions: Sequence[int] | None = None,
    exact: bool = False,
) -> Difference | None:
    """One difference for two aligned columns: the first point outside tolerance, with the largest
    deviations and how many points differ, never one difference per point.

    `path_of(k)` names the k-th aligned point; `positions[k]` is its index in the primary's list
    (default k). Columns of numbers (and nulls) are compared with numpy within (rtol, atol);
    anything else point by point, exactly.
    """
    if _same_points(primary, candidate, exact=exact):
        return None
    numeric = not exact and numbers_or_nulls(primary) and numbers_or_nulls(candidate)
    if numeric:
        ((count, first, stats),) = _numeric_mismatches([(primary, candidate)], [rtol], [atol])
    else:
        count, first, stats = _scalar_mismatches(primary, candidate, rtol, atol, exact=exact)
    return _column_finding(path_of, primary, candidate, count, first, stats, rtol, atol,
                           what=what, noun=noun, positions=positions, exact=exact,
                           numeric=numeric)


def _column_finding(
    path_of: Callable[[int], str],
    primary: Sequence[Any],
    candidate: Sequence[Any],
    count: int,
    first: int,
    stats: str,
    rtol: float,
    atol: float,
    *,
    what: str,
    noun: str,
    positions: Sequence[int] | None,
    exact: bool,
    numeric: bool,
) -> Difference | None:
    """The difference `column_difference` reports, from how many points differ (`count`) and
    the first of them."""
    if not count:
        return None
    p_first, c_first = primary[first], candidate[first]
    path = path_of(first)
    if count == 1:
        single = compare_scalar(path, p_first, c_first, rtol, atol, exact=exact)
        if single is not None:
            return single
    at = positions[first] if positions is not None else first
    tolerance = f" outside rtol {_tolerance(rtol)}" if numeric else " differ"
    detail = f"{stats}; " if stats else ""
    message = (
        f"{what} diverges from index {at} ({detail}{count} of {len(primary)} {noun}{tolerance}): "
        f"{show(p_first)} vs {show(c_first)} at {path}"
    )
    return Difference(path, Kind.CHANGED, p_first, c_first, message)


def _same_points(primary: Sequence[Any], candidate: Sequence[Any], *, exact: bool) -> bool:
    """Every point equal to its counterpart and of its type, so `compare_scalar` finds nothing
    (checked at C speed). Not for exact floats: a NaN is itself yet never exactly equal."""
    if type(primary) is type(candidate):
        if primary != candidate:  # the usual answer, at C speed, before any type is read
            return False
    elif list(primary) != list(candidate):
        return False
    kinds = list(map(type, primary))
    return kinds == list(map(type, candidate)) and not (exact and float in kinds)


def _numeric_mismatches(
    columns: Sequence[tuple[Sequence[Any], Sequence[Any]]],
    rtols: Sequence[float],
    atols: Sequence[float],
) -> list[tuple[int, int, str]]:
    """For each pair of equally long numeric columns (nulls allowed), how many points are
    outside its tolerance, the first of them, and what the deviations were; all columns in one
    numpy comparison (point by point where an integer is past float range)."""
    try:
        return _float_mismatches(columns, rtols, atols)
    except OverflowError:  # an integer past float range, which parse_json keeps exact
        return _exact_mismatches(columns, rtols, atols)


def _exact_mismatches(
    columns: Sequence[tuple[Sequence[Any], Sequence[Any]]],
    rtols: Sequence[float],
    atols: Sequence[float],
) -> list[tuple[int, int, str]]:
    """`_numeric_mismatches` point by point with `compare_scalar` (which compares integers
    past float range as integers), without deviation figures."""
    return [_scalar_mismatches(primary, candidate, rtol, atol)
            for (primary, candidate), rtol, atol in zip(columns, rtols, atols, strict=True)]


def _scalar_mismatches(primary: Sequence[Any], candidate: Sequence[Any], rtol: float,
                       atol: float, *, exact: bool = False) -> tuple[int, int, str]:
    """How many aligned points `compare_scalar` finds different, and the first of them (no
    deviation figures)."""
    bad = [compare_scalar("", p, c, rtol, atol, exact=exact) is not None
           for p, c in zip(primary, candidate, strict=True)]
    count = sum(bad)
    return count, bad.index(True) if count else 0, ""


def _float_mismatches(
    columns: Sequence[tuple[Sequence[Any], Sequence[Any]]],
    rtols: Sequence[float],
    atols: Sequence[float],
) -> list[tuple[int, int, str]]:
    """`_numeric_mismatches` in floats (OverflowError for an integer past float range)."""
    rows, size = len(columns), len(columns[0][0])
    if not size:
        return [(0, 0, "")] * rows
    if rows * size <= _FINITE_POINTS or finite_column is not _finite_column_py:
        finite = _mismatches_finite(columns, rtols, atols)
        if finite is not None:
            return finite
    if rows * size <= _FEW_POINTS:
        few = _mismatches_few(columns, rtols, atols)
        if few is not None:
            return few
    if rows == 1 and rtols[0] >= 0 and atols[0] >= 0:
        single = _one_column(*columns[0], size, float(rtols[0]), float(atols[0]))
        if single is not None:
            return [single]
    import numpy as np

    def array(side: int) -> np.ndarray:
        # fromiter reads the numbers several times faster than np.array reads nested sequences,
        # and reads a null as NaN as np.array does
        values = (columns[0][side] if rows == 1
                  else itertools.chain.from_iterable(column[side] for column in columns))
        return np.fromiter(values, dtype=float, count=size * rows).reshape(rows, size)

    p, c = array(0), array(1)
    rtol: float | np.ndarray
    atol: float | np.ndarray
    if len(set(rtols)) == 1 and len(set(atols)) == 1:
        rtol, atol = float(rtols[0]), float(atols[0])
    else:
        rtol = np.asarray(rtols, dtype=float)[:, None]
        atol = np.asarray(atols, dtype=float)[:, None]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        deviation = np.abs(p - c)
        scale = np.maximum(np.abs(p), np.abs(c))
        bad = deviation > atol + rtol * scale
        if np.isnan(deviation).any():  # a NaN (or a null read as one) on either side
            p_nan, c_nan = np.isnan(p), np.isnan(c)
            bad |= p_nan != c_nan  # a null against a number always differs
            both = bad & ~(p_nan | c_nan)
            rows_both = both.any(axis=1).tolist()
        else:
            both = bad
            rows_both = None
        counts = bad.sum(axis=1).tolist()
        firsts = bad.argmax(axis=1).tolist()
        if rows_both is None:
            rows_both = [count > 0 for count in counts]
        if any(rows_both):
            if min(rtols) >= 0 and min(atols) >= 0:
                # a point outside tolerances not negative deviates, so its scale is above 0
                rel = deviation / scale
            else:
                rel = deviation / np.where(scale > 0, scale, 1.0)  # 0 where both are 0
            max_rel = rel.max(axis=1, where=both, initial=-np.inf).tolist()
            max_abs = deviation.max(axis=1, where=both, initial=-np.inf).tolist()
        else:
            max_rel = max_abs = [0.0] * rows
    out = []
    for count, first, any_both, row_rel, row_abs in zip(counts, firsts, rows_both, max_rel,
                                                         max_abs, strict=True):
        stats = (f"max rel {row_rel:.1e}, max abs {row_abs:.3g}" if any_both
                 else "null against a number")
        out.append((count, first, stats))
    return out



def _one_column(primary: Sequence[Any], candidate: Sequence[Any], size: int, rtol: float,
                atol: float) -> tuple[int, int, str] | None:
    """`_numeric_mismatches` of one column without NaN (None when there is one) within
    tolerances not negative (so a point outside has a scale above 0): the same numpy
    operations, without the general path's reshaping and per-row tolerances, and the
    deviations read on the points outside only."""
    import numpy as np

    # ufuncs and their reduce, not ndarray.sum/max and np.flatnonzero (Python wrappers over
    # them): on a column of a few hundred points the wrappers cost as much as the arithmetic
    p = np.fromiter(primary, dtype=float, count=size)
    c = np.fromiter(candidate, dtype=float, count=size)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        deviation = np.abs(p - c)
        scale = np.maximum(np.abs(p), np.abs(c))
        if math.isnan(np.add.reduce(deviation)):  # (a sum of magnitudes is NaN only with a NaN)
            return None
        outside = deviation > atol + rtol * scale
        at = outside.nonzero()[0]
        if not len(at):
            return 0, 0, "null against a number"  # (the words of no difference, as below)
        # over the points outside only (each above 0), read in place rather than picked out
        max_rel = float(np.maximum.reduce(deviation / scale, where=outside, initial=0.0))
        max_abs = float(np.maximum.reduce(deviation, where=outside, initial=0.0))
    return len(at), int(at[0]), f"max rel {max_rel:.1e}, max abs {max_abs:.3g}"


# Columns up to this many points in all are compared without numpy: its fixed cost (some 30 µs)
# is more than Python's per point (under 1 µs) up to about there.
_FEW_POINTS = 48


def _mismatches_few(
    columns: Sequence[tuple[Sequence[Any], Sequence[Any]]],
    rtols: Sequence[float],
    atols: Sequence[float],
) -> list[tuple[int, int, str]] | None:
    """`_numeric_mismatches` point by point in Python floats, the same IEEE operations numpy does
    (its per-call cost dominates on a few dozen points); None for an integer past float range."""
    out = []
    for (primary, candidate), rtol, atol in zip(columns, rtols, atols, strict=True):
        try:
            p = [math.nan if v is None else float(v) for v in primary]
            c = [math.nan if v is None else float(v) for v in candidate]
        except OverflowError:
            return None
        rtol, atol = float(rtol), float(atol)
        skip_equal = rtol >= 0 and atol >= 0  # equal points then are never outside tolerance
        count, first = 0, -1
        rels: list[float] = []
        deviations: list[float] = []
        for k, (a, b) in enumerate(zip(p, c, strict=True)):
            if a == b and skip_equal:  # equal infinities too (numpy: NaN deviation, not bad)
                continue
            deviation = abs(a - b)
            abs_a, abs_b = abs(a), abs(b)
            # np.maximum: NaN when either is NaN
            scale = abs_a if abs_a != abs_a or abs_a >= abs_b else abs_b
            if abs_b != abs_b:
                scale = abs_b
            bad = deviation > atol + rtol * scale
            both = bad
            if deviation != deviation:
                a_nan, b_nan = a != a, b != b
                bad = bad or a_nan != b_nan
                both = bad and not (a_nan or b_nan)
            if not bad:
                continue
            count += 1
            if first < 0:
                first = k
            if both:
                rels.append(deviation / (scale if scale > 0 else 1.0))
                deviations.append(deviation)
        if rels:
            stats = f"max rel {_nan_max(rels):.1e}, max abs {_nan_max(deviations):.3g}"
        else:
            stats = "null against a number"
        out.append((count, max(first, 0), stats))
    return out


# Columns of finite numbers up to this many points in all are compared in one Python loop: some
# 0.25 µs a point, under numpy's fixed cost up to about there. The compiled kernel (`_kernel.pyx`)
# takes columns of any length: some 10 ns a point.
_FINITE_POINTS = 96


def _mismatches_finite(
    columns: Sequence[tuple[Sequence[Any], Sequence[Any]]],
    rtols: Sequence[float],
    atols: Sequence[float],
) -> list[tuple[int, int, str]] | None:
    """`_numeric_mismatches` of columns of finite numbers (no null, NaN or infinity, no integer
    past float range, no sum of magnitudes past it either) within tolerances not negative, a
    column at a time (`finite_column`): the same IEEE operations numpy does, and with nothing
    undefined on the way (no NaN), the same answer. None for anything else."""
    out = []
    for (primary, candidate), rtol, atol in zip(columns, rtols, atols, strict=True):
        found = finite_column(primary, candidate, float(rtol), float(atol))
        if found is None:
            return None
        count, first, max_rel, max_abs = found
        out.append((count, first, f"max rel {max_rel:.1e}, max abs {max_abs:.3g}" if count
                    else "null against a number"))  # (numpy's words for no difference)
    return out


def _finite_column_py(primary: Sequence[Any], candidate: Sequence[Any], rtol: float,
                      atol: float) -> tuple[int, int, float, float] | None:
    """How many points of two columns of finite numbers are outside tolerance, the first of
    them, and the largest relative and absolute deviation among them, in one Python loop; None
    when a value is no finite number (or an integer past float range), the columns' lengths
    differ or a tolerance is negative. `finite_column` is this, compiled when it could be."""
    if len(primary) != len(candidate) or not (rtol >= 0 and atol >= 0):
        return None
    try:
        p, c = list(map(float, primary)), list(map(float, candidate))
    except (TypeError, OverflowError):  # a null; an integer past float range
        return None
    # every |a − b| and max(|a|, |b|) finite then, and a point outside tolerance has a scale
    # above 0 (0 > atol is never so)
    if not math.isfinite(sum(map(abs, p)) + sum(map(abs, c))):
        return None
    count = first = 0
    max_rel = max_abs = 0.0
    for k, a, b in zip(itertools.count(), p, c):
        if a != b:
            deviation = abs(a - b)
            abs_a, abs_b = abs(a), abs(b)
            scale = abs_a if abs_a >= abs_b else abs_b
            if deviation > atol + rtol * scale:
                if not count:
                    first = k
                count += 1
                rel = deviation / scale
                if rel > max_rel:
                    max_rel = rel
                if deviation > max_abs:
                    max_abs = deviation
    return count, first, max_rel, max_abs


try:  # the compiled kernel, when setup.py could build it (a C compiler at install time)
    from harness.diff._kernel import finite_column
except ImportError:
    finite_column = _finite_column_py
# Whether the compiled kernel is in use (`bench/bench_compare.py` says which it measured).
COMPILED_KERNEL = finite_column is not _finite_column_py


@contextlib.contextmanager
def python_twin() -> Iterator[None]:
    """Within: the kernel's Python twin in place of the compiled kernel, as an install without
    a C compiler runs (the tests and `bench/bench_compare.py` set the two side by side)."""
    global finite_column
    compiled = finite_column
    finite_column = _finite_column_py
    try:
        yield
    finally:
        finite_column = compiled


def _nan_max(values: list[float]) -> float:
    """The largest value, NaN when any is NaN (as numpy's max)."""
    return math.nan if any(v != v for v in values) else max(values)


def compare_columns(
    field_path: Callable[[int, str], str],
    pairs: Sequence[tuple[int, int]],
    primary_rows: Sequence[Mapping[str, Any]],
    candidate_rows: Sequence[Mapping[str, Any]],
    fields: Iterable[str],
    options: CompareOptions,
    *,
    noun: str,
    label: Callable[[str], str] = str,
) -> list[Difference]:
    """Compare the aligned rows column by column: one difference per column at most.

    `pairs` are (primary index, candidate index) of aligned rows; `field_path(i, name)` names field
    `name` of primary row i. A field that only one side's rows have is one missing/extra
    difference.
    """
    if not pairs:
        return []
    fields = list(fields)
    p_positions, c_positions = zip(*pairs, strict=True)
    p_rows = _rows_at(primary_rows, p_positions)
    c_rows = _rows_at(candidate_rows, c_positions)
    # Rows that all have every field (the usual table): the columns in one C-level transpose.
    p_table, c_table = _columns_of(p_rows, fields), _columns_of(c_rows, fields)
    return _compare_aligned(field_path, list(p_positions), fields, p_table, c_table, p_rows,
                            c_rows, options, noun=noun, label=label)


def compare_column_table(
    field_path: Callable[[int, str], str],
    positions: Sequence[int],
    fields: Sequence[str],
    p_table: Sequence[Sequence[Any]],
    c_table: Sequence[Sequence[Any]],
    options: CompareOptions,
    *,
    noun: str,
    label: Callable[[str], str] = str,
    numbers: bool = False,
) -> list[Difference]:
    """`compare_columns` of tables already read column by column and aligned: `p_table[k]` and
    `c_table[k]` hold field `fields[k]` of the aligned rows, `positions` the primary's index of
    each (not empty). `numbers`: the caller has seen that every column holds numbers and nulls
    only (`numbers_or_nulls`), so they are not read again for that."""
    return _compare_aligned(field_path, positions, list(fields), p_table, c_table, (), (),
                            options, noun=noun, label=label, numbers=numbers)


def _compare_aligned(
    field_path: Callable[[int, str], str],
    positions: Sequence[int],
    fields: list[str],
    p_table: Sequence[Sequence[Any]] | None,
    c_table: Sequence[Sequence[Any]] | None,
    p_rows: Sequence[Mapping[str, Any]],
    c_rows: Sequence[Mapping[str, Any]],
    options: CompareOptions,
    *,
    noun: str,
    label: Callable[[str], str],
    numbers: bool = False,
) -> list[Difference]:
    """`compare_columns` from the aligned rows' columns when every row has every field, else
    from the rows (`numbers`: see `compare_column_table`)."""
    found: dict[str, Difference | None] = {}
    # Without per-field tolerances every column has the route's (no path made to look them up).
    tolerance = (None if options.extra.get("tolerances")
                 else options.tol(DEFAULT_RTOL, DEFAULT_ATOL))
    numeric: list[tuple[str, Sequence[Any], Sequence[Any], float, float]] = []
    p_column: Sequence[Any] | None
    c_column: Sequence[Any] | None

    def path_of(name: str) -> Callable[[int], str]:
        return lambda k: field_path(positions[k], name)

    for k, name in enumerate(fields):
        if p_table is not None and c_table is not None:
            p_column, c_column = p_table[k], c_table[k]
            if _same_points(p_column, c_column, exact=False):
                continue
        else:
            p_column, c_column = _field_column(p_rows, c_rows, name)
            if p_column is None or c_column is None:
                found[name] = _field_presence(field_path(positions[0], name), name, p_rows,
                                              c_rows, noun)
                continue
            if _same_points(p_column, c_column, exact=False):
                continue
        if tolerance is None:
            rtol, atol = field_tolerance(options, field_path(positions[0], name), name)
        else:
            rtol, atol = tolerance
        if numbers or (numbers_or_nulls(p_column) and numbers_or_nulls(c_column)):
            found[name] = None  # keeps the field's place among the differences
            numeric.append((name, p_column, c_column, rtol, atol))
            continue
        found[name] = column_difference(
            path_of(name), p_column, c_column, rtol,
            atol, what=label(name), noun=noun, positions=positions)
    if numeric:
        mismatches = _numeric_mismatches([(p, c) for _, p, c, _, _ in numeric],
                                         [rtol for *_, rtol, _ in numeric],
                                         [atol for *_, atol in numeric])
        for (name, p_column, c_column, rtol, atol), (count, first, stats) in zip(
                numeric, mismatches, strict=True):
            found[name] = _column_finding(
                path_of(name), p_column, c_column, count,
                first, stats, rtol, atol, what=label(name), noun=noun, positions=positions,
                exact=False, numeric=True)
    return [d for d in found.values() if d is not None]


def columns_if_same_members(items: list[dict[str, Any]]) -> dict[str, Sequence[Any]] | None:
    """The members' values column by column when every item has the same members, else None."""
    first = items[0]
    names = list(first)
    if not names:
        return {} if not any(map(len, items)) else None
    columns: dict[str, Sequence[Any]]
    try:
        if len(names) <= 4:  # a few long columns: read one by one, faster than a transpose
            columns = {name: list(map(operator.itemgetter(name), items)) for name in names}
        else:
            table = list(map(operator.itemgetter(*names), items))
            columns = dict(zip(names, zip(*table, strict=True), strict=True))
    except KeyError:
        return None
    # Every item has every name (so at least as many members): as many members in all as the
    # first's for each, and no more, is the same members.
    return columns if sum(map(len, items)) == len(names) * len(items) else None


def _rows_at(rows: Sequence[Mapping[str, Any]], at: tuple[int, ...]) -> Sequence[Mapping[str, Any]]:
    """The rows at positions `at` (all of them, in order, without copying when that is all)."""
    if len(at) == len(rows) and at == tuple(range(len(rows))):
        return rows
    return list(map(rows.__getitem__, at))


def _columns_of(rows: Sequence[Mapping[str, Any]],
                fields: list[str]) -> list[tuple[Any, ...]] | None:
    """The rows' values field by field, or None when a row lacks a field (or is no mapping)."""
    if not fields or not rows:
        return None
    getter = operator.itemgetter(*fields)
    try:
        table = list(map(getter, rows))
    except (KeyError, TypeError):
        return None
    if len(fields) == 1:
        return [tuple(table)]
    return list(zip(*table, strict=True))


def _field_column(
    p_rows: Sequence[Mapping[str, Any]], c_rows: Sequence[Mapping[str, Any]], name: str
) -> tuple[list[Any] | None, list[Any] | None]:
    """Field `name` of every row of each side, None for a side none of whose rows has it."""
    p_has = any(name in row for row in p_rows)
    c_has = any(name in row for row in c_rows)
    if p_has != c_has:
        return (None, None)
    return [row.get(name) for row in p_rows], [row.get(name) for row in c_rows]


def _field_presence(
    first_path: str, name: str, p_rows: Sequence[Mapping[str, Any]],
    c_rows: Sequence[Mapping[str, Any]], noun: str
) -> Difference:
    """A field that only one side's rows have: one missing/extra difference."""
    p_has = any(name in row for row in p_rows)
    kind = Kind.MISSING if p_has else Kind.EXTRA
    where = "missing from the candidate's" if p_has else "only in the candidate's"
    return Difference(first_path, kind, p_rows[0].get(name), c_rows[0].get(name),
                      f"{name} {where} {noun}")


# --- timestamps ------------------------------------------------------------------------------


def to_epoch(value: Any) -> float | None:
    """Seconds since the epoch for the timestamp shapes Cryptobot answers with: epoch seconds or
    milliseconds (numbers or numeric strings) and ISO 8601 strings (naive ones read as UTC); None
    for anything else (NaN and infinities included)."""
    if isinstance(value, str):
        return _text_epoch(value)
    number = as_number(value)
    return None if number is None or not math.isfinite(number) else _epoch_seconds(number)


def _epoch_seconds(number: float) -> float:
    if abs(number) > 1e14:  # microseconds
        return number / 1e6
    if abs(number) > 1e11:  # milliseconds
        return number / 1e3
    return number


# Both answers of an exchange, and the answers of one market, repeat the same timestamps.
@lru_cache(maxsize=65_536)
def _text_epoch(value: str) -> float | None:
    number = as_number(value, strings=True)
    if number is not None:
        return _epoch_seconds(number)
    if len(value) < 8:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def epoch_key(seconds: float) -> int:
    """An exact dictionary key for a timestamp (milliseconds)."""
    return round(seconds * 1000)


def time_key(value: Any) -> int | None:
    """``epoch_key(to_epoch(value))``: a timestamp's exact key, or None when it is not one."""
    if isinstance(value, str):
        return _text_key(value)
    if type(value) is float:  # `to_epoch` of a float, without its checks
        return epoch_key(_epoch_seconds(value)) if math.isfinite(value) else None
    seconds = to_epoch(value)
    return None if seconds is None else epoch_key(seconds)


@lru_cache(maxsize=65_536)
def _text_key(value: str) -> int | None:
    seconds = _text_epoch(value)
    return None if seconds is None else epoch_key(seconds)


# The keys of the texts read so far (times only): a column of ISO strings is looked up at C speed
# with dict.get, about twice as fast as through `_text_key`'s lru_cache.
_TEXT_KEYS: dict[str, int] = {}
_TEXT_KEYS_MAX = 65_536


def time_keys(values: Sequence[Any]) -> list[int | None]:
    """`time_key` of every value (a column of ISO strings read through a cache at C speed)."""
    return _time_keys(values)[0]


def _time_keys(values: Sequence[Any]) -> tuple[list[int | None], bool]:
    """`time_keys`, and whether every value is a time (no None among the keys)."""
    if not values or type(values[0]) is not str:
        keys: list[int | None] = list(map(time_key, values))
        return keys, None not in keys
    try:
        keys = list(map(_TEXT_KEYS.get, values))
    except TypeError:  # an unhashable value (an object, a list): no time, read one by one
        keys = list(map(time_key, values))
        return keys, None not in keys
    if all(keys) or None not in keys:  # (truth at C speed; only a key of 0 needs the 2nd)
        return keys, True
    if len(_TEXT_KEYS) >= _TEXT_KEYS_MAX:
        _TEXT_KEYS.clear()
    for i, key in enumerate(keys):
        if key is None:  # not read yet, or no time
            value = values[i]
            key = keys[i] = time_key(value)
            if key is not None and type(value) is str:
                _TEXT_KEYS[value] = key
    return keys, None not in keys


@lru_cache(maxsize=1024)  # the same shift (a timezone) in exchange after exchange
def show_offset(seconds: float) -> str:
    """A shift as a person says it: ``+1h``, ``-30m``, ``+5h30m``, ``+2d``, ``+90s``."""
    sign = "+" if seconds >= 0 else "-"
    rest = round(abs(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    if not parts:
        return f"{sign}{abs(seconds):g}s"
    return sign + "".join(parts)


def best_shift(
    primary_times: Iterable[int],
    candidate_times: Iterable[int],
    score: Callable[[int], int],
    *,
    probe: int = 6,
    scoring: Iterable[int] | None = None,
) -> tuple[int, int] | None:
    """The constant shift (in the keys' unit) that, added to the primary's timestamps, best aligns
    them with the candidate's, as ``(shift, score)``; None when no shift beats no shift at all.

    Candidate shifts are the gaps between the first and last few timestamps of each side; `score`
    counts the points that agree once shifted (so a shift must make the values match too, not just
    the timestamps: hourly candles moved by one hour always overlap). `scoring`, when given, holds
    every shift whose score may be above 0 (the others are not tried: they cannot win).
    """
    p_sorted, c_sorted = sorted(set(primary_times)), sorted(set(candidate_times))
    if not p_sorted or not c_sorted:
        return None
    p_probe = p_sorted[:probe] + p_sorted[-probe:]
    c_probe = c_sorted[:probe] + c_sorted[-probe:]
    voted = None if scoring is None else set(scoring)
    if voted is not None and len(voted) < len(c_probe):
        # few shifts with votes: each checked against the probes (not every probe pair made)
        c_probed = set(c_probe)
        shifts = {s for s in voted if s and any(p + s in c_probed for p in p_probe)}
    else:
        shifts = {c - p for p in p_probe for c in c_probe} - {0}
        if voted is not None:
            shifts &= voted
    baseline = score(0)
    needed = max(baseline + 1, (min(len(p_sorted), len(c_sorted)) + 1) // 2)
    best: tuple[int, int] | None = None
    for shift in sorted(shifts, key=lambda s: (abs(s), s)):
        points = score(shift)
        if points >= needed and (best is None or points > best[1]):
            best = (shift, points)
    return best


def near_pairs(
    primary: Sequence[Any], candidate: Sequence[Any], rtol: float, atol: float
) -> list[tuple[int, int]]:
    """Every (i, j) whose values `within` may call close or `==` equal, found by sorting the
    candidate's values rather than trying every pair: a superset, for an exact check to decide.
    A value that is not a finite number (null, text, NaN, an infinity, a bool) is paired with
    every value of the other side, so that no pair the exact check would accept is left out."""
    import numpy as np

    if not 0 <= rtol < 0.5 or not 0 <= atol < math.inf:  # no useful window: every pair
        return [(i, j) for i in range(len(primary)) for j in range(len(candidate))]
    floats = _finite_floats(primary, candidate)
    if floats is not None:
        exact = _equal_pairs(*floats, rtol, atol)
        if exact is not None:
            return exact
        if len(primary) <= _FEW and len(candidate) <= _FEW:
            return _near_pairs_few(*floats, rtol, atol)
    p, p_odd = _finite_array(primary)
    c, c_odd = _finite_array(candidate)
    odd_c = np.flatnonzero(c_odd).tolist()
    if odd_c:
        c_numeric = np.flatnonzero(~c_odd)
        order = np.argsort(c[c_numeric], kind="stable")
        keys, at = c[c_numeric][order], c_numeric[order]
    else:  # the usual: every candidate value is a finite number
        at = np.argsort(c, kind="stable")
        keys = c[at]
    with np.errstate(invalid="ignore", over="ignore"):  # a window past float range: infinite
        # within(a, b) implies |a - b| <= (atol + rtol·|a|) / (1 - rtol); widened for rounding.
        reach = (atol + rtol * np.abs(p)) / (1 - rtol) * (1 + 1e-9) + 1e-300
        low = np.searchsorted(keys, p - reach, "left")
        high = np.searchsorted(keys, p + reach, "right")
    odd_p = np.flatnonzero(p_odd).tolist()
    hits = high > low
    if odd_p:
        hits &= ~p_odd
    pairs: list[tuple[int, int]] = []
    for i in np.flatnonzero(hits).tolist():
        pairs += ((i, j) for j in at[low[i]:high[i]].tolist())
    if odd_c:
        pairs += ((i, j) for i in np.flatnonzero(~p_odd).tolist() for j in odd_c)
    pairs += ((i, j) for i in odd_p for j in range(len(candidate)))
    return pairs


def near_count(
    primary: Sequence[Any], candidate: Sequence[Any], rtol: float, atol: float
) -> int | None:
    """At most how many of `primary`'s values `near_pairs` pairs with some value of `candidate`:
    an upper bound found at C speed (each value's cell of four times the widest window, the
    window of the primary's largest value; a pair lies in one cell or two neighbours). None where
    it cannot tell (a value that is not a finite number, no useful window)."""
    if not 0 <= rtol < 0.5 or not 0 <= atol < math.inf:
        return None
    if not primary or not candidate:
        return 0
    if not {*map(type, primary), *map(type, candidate)} <= {int, float}:
        return None
    try:
        widest = max(max(primary), -min(primary))
        cell = 4 * ((atol + rtol * widest) / (1 - rtol) * (1 + 1e-9) + 1e-300)
        per_cell = 1 / cell
        # products this small are within a thousandth of a cell of the exact quotient (a
        # candidate's value far past them is near no primary value: its cell only adds)
        if not widest * per_cell < 2.0**40:
            return None
        scale = itertools.repeat(per_cell)
        p_cells = list(map(math.floor, map(operator.mul, primary, scale)))
        c_cells = set(map(math.floor, map(operator.mul, candidate, scale)))
    except (OverflowError, ValueError):  # NaN, an infinity, an integer past float range
        return None
    near = c_cells.union(map(operator.add, c_cells, itertools.repeat(1)),
                         map(operator.sub, c_cells, itertools.repeat(1)))
    return sum(map(near.__contains__, p_cells))


_FEW = 64  # lists up to this long are searched without numpy (its per-call cost dominates)


def _finite_floats(primary: Sequence[Any],
                   candidate: Sequence[Any]) -> tuple[list[float], list[float]] | None:
    """Both lists as floats when every value is a finite number of float range (not a bool),
    else None."""
    if not set(map(type, primary)) | set(map(type, candidate)) <= {int, float}:
        return None
    try:
        p, c = list(map(float, primary)), list(map(float, candidate))
    except OverflowError:
        return None
    if not (all(map(math.isfinite, p)) and all(map(math.isfinite, c))):
        return None
    return p, c


def _near_pairs_few(p: list[float], c: list[float], rtol: float,
                    atol: float) -> list[tuple[int, int]]:
    """`near_pairs` of short lists of finite floats, in the same order (each primary value's
    window over the candidate's values in ascending order), without numpy."""
    import bisect

    order = sorted(range(len(c)), key=c.__getitem__)
    keys = list(map(c.__getitem__, order))
    pairs: list[tuple[int, int]] = []
    for i, value in enumerate(p):
        # the window of `near_pairs`, computed the same way
        reach = (atol + rtol * abs(value)) / (1 - rtol) * (1 + 1e-9) + 1e-300
        low = bisect.bisect_left(keys, value - reach)
        high = bisect.bisect_right(keys, value + reach, low)
        if high > low:
            pairs += ((i, j) for j in order[low:high])
    return pairs


def _equal_pairs(p: list[float], c: list[float], rtol: float,
                 atol: float) -> list[tuple[int, int]] | None:
    """`near_pairs` of finite floats when no two distinct values of both lists are within four
    windows of each other (prices a tick apart, not a rounding apart): each window then holds the
    equal values only, in index order. None when some are that close."""
    values = sorted({*p, *c})
    if len(values) > 1:
        widest = max(abs(values[0]), abs(values[-1]))
        reach = (atol + rtol * widest) / (1 - rtol) * (1 + 1e-9) + 1e-300
        if min(map(operator.sub, values[1:], values[:-1])) <= 4 * reach:
            return None
    first = dict(zip(c, range(len(c)), strict=True))
    if len(first) == len(c):  # the usual: no value repeated, one pair at most per value
        return [(i, j) for i, j in enumerate(map(first.get, p)) if j is not None]
    at: dict[float, list[int]] = {}
    for j, value in enumerate(c):
        at.setdefault(value, []).append(j)
    pairs: list[tuple[int, int]] = []
    for i, found in enumerate(map(at.get, p)):
        if found is not None:
            pairs += zip(itertools.repeat(i), found)
    return pairs


def _finite_array(values: Sequence[Any]) -> tuple[Any, Any]:
    """(`values` as floats, where a value is not a finite number of float range: NaN there)."""
    import numpy as np

    if set(map(type, values)) <= {int, float}:
        try:
            array = np.array(values, dtype=float)
        except OverflowError:
            pass
        else:
            return array, ~np.isfinite(array)
    numbers = [_finite(v) for v in values]
    array = np.array([math.nan if n is None else n for n in numbers], dtype=float)
    return array, np.array([n is None for n in numbers], dtype=bool)


def _finite(value: Any) -> float | None:
    """`value` as a float when it is a finite number of float range (not a bool), else None."""
    if not is_number(value):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def compare_time_column(
    path_of: Callable[[int], str],
    primary: Sequence[Any],
    candidate: Sequence[Any],
    *,
    what: str,
    noun: str = "points",
) -> Difference | None:
    """One difference for two positionally aligned timestamp columns: a constant shift (one
    timezone) is named as such, the same instants in another notation are said to be so, anything
    else is the first index that differs."""
    # The same values of the same types (no float: a NaN is itself yet never exactly equal):
    # what the keys would come to, at C speed.
    if _same_points(primary, candidate, exact=True):
        return None
    p_keys, p_times = _time_keys(primary)
    c_keys, c_times = _time_keys(candidate)
    if not (p_times and c_times):
        return column_difference(path_of, primary, candidate, 0.0, 0.0, what=what, exact=True)
    deltas = list(map(operator.sub, c_keys, p_keys))
    if not deltas:
        return None
    delta = deltas[0]
    constant = deltas.count(delta) == len(deltas)  # (one C-speed pass, not a set)
    if constant and not delta:
        for i, (p, c) in enumerate(zip(primary, candidate, strict=True)):
            if p != c:
                return Difference(
                    path_of(i),
                    Kind.TYPE if type(p) is not type(c) else Kind.CHANGED,
                    p,
                    c,
                    f"{what} are the same instants in another notation: {show(p)} vs {show(c)}",
                )
        return None
    if constant:
        return shift_difference(path_of(0), primary[0], candidate[0], delta / 1000, what)
    first = next(i for i, d in enumerate(deltas) if d)
    count = len(deltas) - deltas.count(0)
    return Difference(
        path_of(first),
        Kind.CHANGED,
        primary[first],
        candidate[first],
        f"{what} differ from index {first} ({count} of {len(deltas)} {noun}): "
        f"{show(primary[first])} vs {show(candidate[first])}",
    )


def shift_difference(
    path: str, primary: Any, candidate: Any, seconds: float, what: str
) -> Difference:
    """The one difference standing for a whole column moved by a constant (a timezone)."""
    return Difference(
        path,
        Kind.CHANGED,
        primary,
        candidate,
        f"{what} shifted by {show_offset(seconds)} ({show(primary)} vs {show(candidate)})",
    )


# --- answers ---------------------------------------------------------------------------------


_DERIVED: dict[tuple[int, Hashable], tuple[CompareOptions, CompareOptions]] = {}
_DERIVED_MAX = 4096


def derived(
    options: CompareOptions, key: Hashable, build: Callable[[CompareOptions], CompareOptions]
) -> CompareOptions:
    """`build(options)`, built once per options object and `key`: a route keeps its options for
    the life of the process, and comparators derive theirs (defaults added) on every exchange."""
    hit = _DERIVED.get((id(options), key))
    if hit is not None and hit[0] is options:  # the entry holds `options`: its id is not reused
        return hit[1]
    built = build(options)
    if len(_DERIVED) >= _DERIVED_MAX:
        _DERIVED.clear()
    _DERIVED[(id(options), key)] = (options, built)
    return built


def with_ignored(options: CompareOptions, globs: Iterable[str]) -> CompareOptions:
    """`options` with more ignore globs (the comparator's volatile fields)."""
    globs = tuple(globs)

    def build(options: CompareOptions) -> CompareOptions:
        extra = tuple(g for g in globs if g not in options.ignore)
        return dataclasses.replace(options, ignore=options.ignore + extra) if extra else options

    return derived(options, ("ignore", globs), build)


def drop_ignored(differences: list[Difference], options: CompareOptions) -> list[Difference]:
    """The differences whose path no ignore glob selects."""
    ignored = matcher(options.ignore)
    if not ignored:
        return differences
    return [d for d in differences if not ignored(d.path)]


def compare_answers(
    primary: Lifted,
    candidate: Lifted,
    options: CompareOptions,
    body: BodyCompare,
    *,
    header_options: CompareOptions | None = None,
    skip_identical: bool = True,
) -> list[Difference]:
    """Status and headers through the generic helpers, then `body` when both bodies are JSON
    (unless they are byte-identical and `skip_identical`); anything else (text, bytes, a body
    that failed to parse) goes to the generic comparator."""
    from harness.diff.tree import compare_headers, compare_json, compare_status

    if primary.kind != "json" or candidate.kind != "json":
        return drop_ignored(compare_json(primary, candidate, header_options or options), options)
    differences = list(compare_status(primary, candidate))
    differences += compare_headers(primary, candidate, header_options or options)
    if not (skip_identical and primary.raw and primary.raw == candidate.raw):
        differences += body(primary, candidate, options)
    return drop_ignored(differences, options)


def generic_bodies(
    primary: Any, candidate: Any, options: CompareOptions, *, path: str = ""
) -> list[Difference]:
    """The generic tree diff of two sub-trees (what the domain comparators don't handle)."""
    from harness.diff.tree import compare_bodies

    if options.rtol is None or options.atol is None:  # the domain default, not exact equality
        options = derived(options, "domain tolerance", _domain_tolerance)
    return list(compare_bodies(primary, candidate, options, path=path))


def generic_pairs(
    items: Iterable[tuple[Any, Any, str]], options: CompareOptions
) -> list[Difference]:
    """`generic_bodies` of every ``(primary, candidate, path)``, concatenated (one walk)."""
    from harness.diff.tree import compare_many

    if options.rtol is None or options.atol is None:
        options = derived(options, "domain tolerance", _domain_tolerance)
    return compare_many(items, options)


def _domain_tolerance(options: CompareOptions) -> CompareOptions:
    rtol, atol = options.tol(DEFAULT_RTOL, DEFAULT_ATOL)
    return dataclasses.replace(options, rtol=rtol, atol=atol)


def member_difference(path: str, value: Any, *, missing: bool) -> Difference:
    """A member that one answer has and the other lacks (`missing`: the candidate lacks it)."""
    if missing:
        return Difference(
            path, Kind.MISSING, value, None, f"{path} missing from the candidate's answer"
        )
    return Difference(path, Kind.EXTRA, None, value, f"{path} only in the candidate's answer")


def critical(difference: Difference) -> Difference:
    """The same difference, marked critical."""
    difference.severity = Severity.CRITICAL
    return difference
