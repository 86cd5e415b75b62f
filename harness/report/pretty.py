"""Pretty-print a JSON answer as lines that know their difference path, so the report can
highlight exactly the lines that differ and show only those with some context around them.

Paths are built with :mod:`harness.diff.paths`, the same way the comparators build them. A line
is marked when its path is a differing path or lies below one. The work is proportional to the
differences, not to the body: a large container with no difference inside is folded into one
line, and in a large container with differences only the first items and the items around the
differing ones are printed; the rest become "⋯ 393 items ⋯" gap lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import orjson

from harness.diff.paths import index, key

FOLD_ITEMS = 12  # containers longer than this are folded or thinned out
FOLD_CHARS = 160  # a folded container shows at most this much of itself
HEAD_ITEMS = 3  # first items always printed of a thinned-out container
NEAR_ITEMS = 2  # items printed on each side of a differing item
MAX_LINES = 5_000  # a hard stop, whatever the shape of the body
CONTEXT = 3  # lines shown around each marked line when windowing
HEAD = 24  # lines always shown from the top when windowing
GAP = "gap"


@dataclass(slots=True)
class Line:
    """One printed line: indentation, an optional ``"key": `` label, the text, and its mark:
    "" plain, "diff" a real difference, "noise" a learned-noise difference, "gap" left-out lines."""

    depth: int
    label: str
    text: str
    mark: str = ""

    @property
    def size(self) -> int:
        return len(self.text) + len(self.label) + 2 * self.depth


def gap(depth: int, count: int, what: str) -> Line:
    """A line standing for `count` left-out items or lines."""
    return Line(depth, "", f"⋯ {count} {what}{'s' if count != 1 else ''} ⋯", GAP)


def _boundaries(path: str) -> list[int]:
    return [i for i, char in enumerate(path) if char in ".[" and i]


def compact(value: Any, limit: int = FOLD_CHARS) -> str:
    """`value` as one line of JSON, cut at `limit` characters."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Printer:
    def __init__(self, marks: dict[str, str]) -> None:
        self.marks = marks  # path -> "diff" | "noise"
        # parent path -> child paths leading to a difference
        self.children: dict[str, set[str]] = {}
        for path in marks:
            cuts = [0, *_boundaries(path), len(path)]
            for a, b in pairwise(cuts):
                self.children.setdefault(path[:a], set()).add(path[:b])
        self.lines: list[Line] = []
        self.full = False

    def emit(self, line: Line) -> None:
        if len(self.lines) >= MAX_LINES:
            if not self.full:
                self.full = True
                self.lines.append(Line(0, "", "⋯ the rest is cut ⋯", GAP))
            return
        self.lines.append(line)

    def value(self, value: Any, path: str, depth: int, label: str, comma: str, mark: str) -> None:
        if self.full:
            return
        if mark != "diff":
            mark = self.marks.get(path, mark)
        if isinstance(value, dict) and value:
            self.container(value, "{", "}", path, depth, label, comma, mark)
        elif isinstance(value, list) and value:
            self.container(value, "[", "]", path, depth, label, comma, mark)
        else:
            self.emit(Line(depth, label, compact(value, 1 << 30) + comma, mark))

    def container(
        self,
        value: dict | list,
        opener: str,
        closer: str,
        path: str,
        depth: int,
        label: str,
        comma: str,
        mark: str,
    ) -> None:
        what = "key" if opener == "{" else "item"
        inside = self.children.get(path)
        if len(value) > FOLD_ITEMS and not mark and not inside:
            self.emit(Line(depth, label, f"{compact(value)}{comma}  ⟨{len(value)} {what}s⟩", ""))
            return
        self.emit(Line(depth, label, opener, mark))
        if isinstance(value, dict):
            entries = [
                (key(path, k), v, orjson.dumps(str(k)).decode() + ": ") for k, v in value.items()
            ]
            wanted = {i for i, (p, _, _) in enumerate(entries) if inside and p in inside}
        else:
            entries = None
            wanted = _indices(path, inside)
        count = len(value)
        if count <= FOLD_ITEMS:
            show: Iterable[int] = range(count)
        elif mark:  # the whole container differs: its first items say enough
            show = range(FOLD_ITEMS)
        else:
            keep = set(range(HEAD_ITEMS))
            for i in wanted:
                keep.update(range(max(0, i - NEAR_ITEMS), min(count, i + NEAR_ITEMS + 1)))
            show = sorted(keep)
        last = -1
        for i in show:
            if i > last + 1:
                self.emit(gap(depth + 1, i - last - 1, what))
            if entries is not None:
                child_path, child, child_label = entries[i]
            else:
                child_path, child, child_label = index(path, i), value[i], ""
            self.value(
                child, child_path, depth + 1, child_label, "," if i < count - 1 else "", mark
            )
            last = i
        if last < count - 1:
            self.emit(gap(depth + 1, count - 1 - last, what))
        self.emit(Line(depth, "", closer + comma, mark))


def _indices(path: str, inside: set[str] | None) -> set[int]:
    """The list indices below `path` that lead to a difference."""
    if not inside:
        return set()
    start = len(path) + 1
    out = set()
    for child in inside:
        digits = child[start:-1]
        if child.endswith("]") and digits.isdigit():
            out.add(int(digits))
    return out


def json_lines(value: Any, marks: dict[str, str]) -> list[Line]:
    """`value` pretty-printed, each line marked when its path (or one above it) is in `marks`."""
    printer = _Printer(marks)
    printer.value(value, "", 0, "", "", "")
    return printer.lines


def window(lines: list[Line], cap_chars: int) -> tuple[list[Line], bool]:
    """The lines worth showing, at most `cap_chars` characters in all: first the marked lines
    with `CONTEXT` lines around each, then the top of the body. Returns the shown lines in
    order (left-out runs become gap lines), and whether any line was left out."""
    if sum(line.size for line in lines) <= cap_chars:
        return list(lines), False
    wanted: list[int] = []
    for i, line in enumerate(lines):
        if line.mark and line.mark != GAP:
            wanted.extend(range(max(0, i - CONTEXT), min(len(lines), i + CONTEXT + 1)))
    wanted.extend(range(min(HEAD, len(lines))))
    keep: set[int] = set()
    used = 0
    for i in wanted:
        if i in keep:
            continue
        if used + lines[i].size > cap_chars:
            break
        keep.add(i)
        used += lines[i].size
    out: list[Line] = []
    last = -1
    for i in sorted(keep):
        if i > last + 1:
            out.append(gap(lines[i].depth, i - last - 1, "line"))
        out.append(lines[i])
        last = i
    if last < len(lines) - 1:
        out.append(gap(0, len(lines) - 1 - last, "line"))
    return out, True


ROOT_NAME = "body"  # how a difference at the root of a body ("" as a path) is named


def shown_path(path: Any) -> str:
    """A difference path as a person reads it: the root of the body is ``body``, never empty."""
    text = str(path or "")
    return text or ROOT_NAME
