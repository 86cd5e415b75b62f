"""The generic `json` comparator and the helpers every domain comparator builds on: status code,
headers (volatile ones ignored), and JSON bodies diffed with deepdiff under our path syntax, with
numeric tolerance, ignore globs and order-insensitive lists. Non-JSON bodies are compared as text
or bytes. Byte-identical or canonically equal bodies skip deepdiff entirely (the fast path)."""

from __future__ import annotations

import difflib
import hashlib
import math
from collections import defaultdict
from typing import Any

import numpy as np
import orjson
from deepdiff import DeepDiff
from deepdiff.operator import BaseOperator

from comparators import paths
from comparators.base import CompareOptions, Incomparable, Lifted, register
from harness.model import Difference, Kind, Severity

# Headers that differ between any two deployments, or between two requests to the same one.
VOLATILE_HEADERS = frozenset(
    {
        "date", "server", "x-request-id", "x-process-time", "x-correlation-id", "x-trace-id",
        "traceparent", "content-length", "transfer-encoding", "connection", "keep-alive", "etag",
        "last-modified", "age", "expires", "via", "alt-svc", "set-cookie", "x-cryptobot-flavor",
        "x-served-by", "x-runtime", "cf-ray", "report-to", "nel", "content-encoding", "vary",
    }
)
VOLATILE_HEADER_PREFIXES = ("x-ratelimit-", "ratelimit-", "x-amzn-", "x-envoy-")
# A list with more items added or removed than this is described by its length, not per item.
MAX_ITEM_FINDINGS = 5


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


def _header_ignored(name: str, options: CompareOptions) -> bool:
    return (
        name in VOLATILE_HEADERS
        or name.startswith(VOLATILE_HEADER_PREFIXES)
        or name in {h.lower() for h in options.ignore_headers}
    )


def _media_type(values: list[str] | None) -> str | None:
    if not values:
        return None
    return values[0].split(";", 1)[0].strip().lower()


def compare_headers(
    primary: Lifted, candidate: Lifted, options: CompareOptions
) -> list[Difference]:
    """Headers that matter (content-type by media type, cache-control, location...); volatile ones
    and `options.ignore_headers` are ignored."""
    if not options.compare_headers:
        return []
    differences = []
    for name in sorted(set(primary.headers) | set(candidate.headers)):
        if _header_ignored(name, options):
            continue
        p_values, c_values = primary.headers.get(name), candidate.headers.get(name)
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
        severity = Severity.WARNING if name in ("content-type", "location") else Severity.INFO
        differences.append(Difference(path, kind, p_value, c_value, message, severity))
    return differences


class _Tolerance(BaseOperator):
    """Numbers within rtol/atol of each other are equal (symmetric, like numpy.isclose with the
    larger magnitude as reference)."""

    def __init__(self, rtol: float, atol: float) -> None:
        super().__init__(types=[int, float])
        self.rtol, self.atol = rtol, atol

    def match(self, level) -> bool:
        a, b = level.t1, level.t2
        return isinstance(a, int | float) and isinstance(b, int | float)

    def give_up_diffing(self, level, diff_instance) -> bool:
        a, b = level.t1, level.t2
        if isinstance(a, bool) or isinstance(b, bool):
            if type(a) is not type(b):  # true vs 1: JSON keeps them apart, Python does not
                diff_instance.custom_report_result("type_changes", level)
                return True
            return False
        return _close(float(a), float(b), self.rtol, self.atol)

    def normalize_value_for_hashing(self, parent: Any, obj: Any) -> Any:
        # Order-insensitive lists pair items by hash: numbers pair only when equal.
        return obj


class _NumericArrays(BaseOperator):
    """Long lists of numbers (equity curves, series) compared with numpy in one step: one
    difference naming the first index past tolerance, not one per point."""

    MIN_LENGTH = 32

    def __init__(self, rtol: float, atol: float, base: str) -> None:
        super().__init__(types=[list])
        self.rtol, self.atol, self.base = rtol, atol, base
        self.found: list[Difference] = []

    def match(self, level) -> bool:
        a, b = level.t1, level.t2
        return (isinstance(a, list) and isinstance(b, list) and len(a) >= self.MIN_LENGTH
                and len(a) == len(b) and _all_numbers(a) and _all_numbers(b))

    def give_up_diffing(self, level, diff_instance) -> bool:
        a = np.asarray(level.t1, dtype=float)
        b = np.asarray(level.t2, dtype=float)
        scale = np.maximum(np.abs(a), np.abs(b))
        bad = ~((np.abs(a - b) <= self.atol + self.rtol * scale) | (np.isnan(a) & np.isnan(b)))
        if bad.any():
            where = _path_from_list(self.base, level.path(output_format="list"))
            first = int(np.argmax(bad))
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(scale > 0, np.abs(a - b) / scale, 0.0)
            self.found.append(Difference(
                paths.index(where, first), Kind.CHANGED, level.t1[first], level.t2[first],
                f"{where or 'body'} diverges from index {first} ({int(bad.sum())} of {len(a)} "
                f"points, max rel {float(np.nanmax(rel)):.1e})",
            ))
        return True

    def normalize_value_for_hashing(self, parent: Any, obj: Any) -> Any:
        return obj


def _all_numbers(values: list) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return True
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def _show(value: Any, limit: int = 60) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number" if not isinstance(value, int) else "int"
    return {str: "str", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _number_message(path: str, a: Any, b: Any, rtol: float, atol: float) -> str:
    scale = max(abs(a), abs(b))
    rel = abs(a - b) / scale if scale else 0.0
    where = path or "body"
    shown_a, shown_b = _distinct_digits(a, b)
    if atol and not rtol:
        return f"{where} {shown_a} vs {shown_b} (abs {abs(a - b):.1e} > {atol:g})"
    if rtol:
        return f"{where} {shown_a} vs {shown_b} (rel {rel:.1e} > {rtol:g})"
    return f"{where} {shown_a} vs {shown_b}"


def _distinct_digits(a: Any, b: Any) -> tuple[str, str]:
    """Both numbers with as few significant digits (at least 5) as tell them apart."""
    if isinstance(a, int) and isinstance(b, int):
        return str(a), str(b)
    for digits in range(5, 18):
        shown_a, shown_b = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if shown_a != shown_b:
            return shown_a, shown_b
    return repr(a), repr(b)


def _path_from_list(base: str, keys: list[Any]) -> str:
    path = base
    for key in keys:
        path = paths.index(path, key) if isinstance(key, int) else paths.key(path, key)
    return path


def _canonical(value: Any) -> bytes | None:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return None


def compare_bodies(
    primary: Any, candidate: Any, options: CompareOptions, *, path: str = ""
) -> list[Difference]:
    """Differences between two parsed JSON values, at paths under `path`."""
    if primary == candidate and _canonical(primary) == _canonical(candidate):
        return []
    rtol, atol = options.tol(0.0, 0.0)
    unordered = paths.PathMatcher(options.unordered)
    ignored = paths.PathMatcher(options.ignore)

    def order_free(level, *_: Any) -> bool:
        where = _path_from_list(path, level.path(output_format="list"))
        return bool(unordered) and unordered(where)

    arrays = _NumericArrays(rtol, atol, path)
    diff = DeepDiff(
        primary,
        candidate,
        view="tree",
        ignore_nan_inequality=True,
        ignore_type_in_groups=[(int, float)],  # 1 vs 1.0 is one JSON number; True vs 1 is not
        ignore_order_func=order_free if unordered else None,
        custom_operators=[arrays, _Tolerance(rtol, atol)],
        threshold_to_diff_deeper=0,
        verbose_level=2,
        log_frequency_in_sec=0,
    )
    differences: list[Difference] = []
    items_by_list: dict[str, list[Difference]] = defaultdict(list)
    for report_type, levels in diff.tree.items():
        for level in levels:
            keys = level.path(output_format="list")
            where = _path_from_list(path, keys)
            if ignored and ignored(where):
                continue
            found = _difference(report_type, where, level.t1, level.t2, rtol, atol)
            if found is None:
                continue
            if found.kind in (Kind.MISSING, Kind.EXTRA) and keys and isinstance(keys[-1], int):
                items_by_list[_path_from_list(path, keys[:-1])].append(found)
            else:
                differences.append(found)
    for list_path, items in items_by_list.items():
        differences.extend(_summarise_items(list_path, items, primary, candidate, path))
    differences.extend(d for d in arrays.found if not (ignored and ignored(d.path)))
    return _collapse_reorders(differences, primary, candidate, path)


def _difference(
    report_type: str, where: str, t1: Any, t2: Any, rtol: float, atol: float
) -> Difference | None:
    if report_type in ("dictionary_item_removed", "iterable_item_removed", "attribute_removed"):
        return Difference(where, Kind.MISSING, t1, None,
                          f"{where} missing from the candidate's answer")
    if report_type in ("dictionary_item_added", "iterable_item_added", "attribute_added"):
        return Difference(where, Kind.EXTRA, None, t2, f"{where} only in the candidate's answer")
    if report_type == "type_changes":
        return Difference(
            where, Kind.TYPE, t1, t2,
            f"{where or 'body'}: type changed {_json_type(t1)} → {_json_type(t2)} "
            f"({_show(t1)} vs {_show(t2)})",
        )
    if report_type == "values_changed":
        numbers = all(isinstance(t, int | float) and not isinstance(t, bool) for t in (t1, t2))
        if numbers:
            message = _number_message(where, t1, t2, rtol, atol)
        else:
            message = f"{where or 'body'} {_show(t1)} vs {_show(t2)}"
        return Difference(where, Kind.CHANGED, t1, t2, message)
    if report_type == "repetition_change":
        return Difference(where, Kind.LENGTH, t1, t2,
                          f"{where} repeated a different number of times")
    return None


def _summarise_items(
    list_path: str, items: list[Difference], primary: Any, candidate: Any, base: str
) -> list[Difference]:
    if len(items) <= MAX_ITEM_FINDINGS:
        return items
    p_list = _at(primary, list_path, base)
    c_list = _at(candidate, list_path, base)
    p_len = len(p_list) if isinstance(p_list, list) else None
    c_len = len(c_list) if isinstance(c_list, list) else None
    missing = sum(1 for d in items if d.kind is Kind.MISSING)
    extra = len(items) - missing
    return [
        Difference(
            list_path, Kind.LENGTH, p_len, c_len,
            f"{list_path or 'body'} has {p_len} vs {c_len} items "
            f"({missing} missing, {extra} extra; first at {items[0].path})",
        )
    ]


def _at(tree: Any, target: str, base: str) -> Any:
    """The value at path `target` in `tree` (whose root is at path `base`), or None."""
    want = target
    if base and want.startswith(base):
        want = want[len(base):].lstrip(".")
    if not want:
        return tree
    node = tree
    for part in _split(want):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _split(path: str) -> list[Any]:
    parts: list[Any] = []
    token = ""
    i = 0
    while i < len(path):
        char = path[i]
        if char == ".":
            if token:
                parts.append(token)
            token = ""
        elif char == "[":
            if token:
                parts.append(token)
            token = ""
            end = path.index("]", i)
            inner = path[i + 1 : end]
            parts.append(orjson.loads(inner) if inner.startswith('"') else int(inner))
            i = end
        else:
            token += char
        i += 1
    if token:
        parts.append(token)
    return parts


def _collapse_reorders(
    differences: list[Difference], primary: Any, candidate: Any, base: str
) -> list[Difference]:
    """Changes at every index of a list whose items are merely reordered become one ORDER
    difference at the list."""
    by_list: dict[str, list[Difference]] = defaultdict(list)
    for diff in differences:
        if diff.path.endswith("]"):
            by_list[diff.path[: diff.path.rindex("[")]].append(diff)
    if not by_list:
        return differences
    collapsed: set[str] = set()
    result: list[Difference] = []
    for list_path, items in by_list.items():
        if len(items) < 2:
            continue
        p_list, c_list = _at(primary, list_path, base), _at(candidate, list_path, base)
        both_lists = isinstance(p_list, list) and isinstance(c_list, list)
        if not both_lists or len(p_list) != len(c_list):
            continue
        if sorted(map(_canonical_text, p_list)) == sorted(map(_canonical_text, c_list)):
            collapsed.add(list_path)
            result.append(Difference(
                list_path, Kind.ORDER, None, None,
                f"{list_path or 'body'}: same {len(p_list)} items in another order",
            ))
    for diff in differences:
        owner = diff.path[: diff.path.rindex("[")] if diff.path.endswith("]") else None
        if owner not in collapsed or not _is_direct_item(diff.path, owner):
            result.append(diff)
    return result


def _is_direct_item(path: str, owner: str | None) -> bool:
    return owner is not None and path.startswith(owner + "[")


def _canonical_text(value: Any) -> bytes:
    return _canonical(value) or repr(value).encode()


def compare_text(primary: str, candidate: str) -> list[Difference]:
    """One difference for two different text bodies, with the first differing lines."""
    if primary == candidate:
        return []
    lines = list(difflib.unified_diff(
        primary.splitlines(), candidate.splitlines(), "primary", "candidate", n=0, lineterm=""
    ))[2:6]
    excerpt = " | ".join(line[:80] for line in lines)
    return [Difference("", Kind.CHANGED, primary[:200], candidate[:200],
                       f"text bodies differ: {excerpt}")]


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
    """Bodies of any kind: JSON through deepdiff, else text or bytes. Raises Incomparable when one
    side claimed JSON but did not parse and the bytes differ."""
    if primary.raw == candidate.raw:
        return []
    for side, lifted in (("primary", primary), ("candidate", candidate)):
        if lifted.parse_error:
            raise Incomparable(f"{side} body: {lifted.parse_error}")
    if primary.kind == "json" and candidate.kind == "json":
        return compare_bodies(primary.body, candidate.body, options)
    if primary.kind != candidate.kind and "empty" not in (primary.kind, candidate.kind):
        return [Difference("", Kind.TYPE, primary.kind, candidate.kind,
                           f"body is {primary.kind} vs {candidate.kind}")]
    if primary.kind == "bytes" or candidate.kind == "bytes":
        return compare_bytes(primary.raw, candidate.raw)
    return compare_text(primary.raw.decode("utf-8", "replace"),
                        candidate.raw.decode("utf-8", "replace"))


@register("json")
def compare_json(primary: Lifted, candidate: Lifted, options: CompareOptions) -> list[Difference]:
    """Status, headers and body of two answers."""
    differences = compare_status(primary, candidate)
    differences += compare_headers(primary, candidate, options)
    differences += compare_any_bodies(primary, candidate, options)
    return differences
