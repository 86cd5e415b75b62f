"""Difference paths and the globs that select them.

A path names a place in a JSON body: ``results.metrics.sharpe_ratio``, ``trades[3].fee``; the
root is ``""``. Keys that are not plain identifiers are quoted: ``headers["x-y"]``. Globs:
``*`` one key, ``[*]`` any index, ``**`` any run of segments. A glob also selects everything below
what it matches (``metrics`` selects ``metrics.sharpe_ratio``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

_PLAIN_KEY = re.compile(r"^[A-Za-z_@][A-Za-z0-9_\-@]*$")
_INDEX = re.compile(r"\[\d+\]")


@lru_cache(maxsize=65_536, typed=True)  # a route's paths repeat exchange after exchange
def key(path: str, name: object) -> str:
    """The path of member `name` below `path`."""
    name = str(name)
    segment = _segment(name)
    if segment is None:
        return f"{path}.{name}" if path else name
    return path + segment


@lru_cache(maxsize=4096)  # member names repeat in every answer of a route
def _segment(name: str) -> str | None:
    """None for a plain key (joined with a dot), else its quoted segment: ``["x-y"]``."""
    if _PLAIN_KEY.match(name):
        return None
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'["{escaped}"]'


def index(path: str, i: int) -> str:
    """The path of item `i` of the list at `path`."""
    return f"{path}[{i}]"


@lru_cache(maxsize=8192)  # a route's difference paths repeat exchange after exchange
def generalize(path: str) -> str:
    """The path with every list index replaced by ``[*]``: how noise is counted per route."""
    return _INDEX.sub("[*]", path)


@lru_cache(maxsize=1024)
def _compile(glob: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            if glob.startswith(".", i):  # "**.id" also matches a top-level "id"
                out[-1] = "(?:.*[.\\]])?"
                i += 1
        elif glob.startswith("[*]", i):
            out.append(r"\[\d+\]")
            i += 3
        elif glob[i] == "*":
            out.append(r'(?:[^.\[\]]+|\["(?:[^"\\]|\\.)*"\])')
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("^" + "".join(out) + r"(?:$|[.\[])")


class PathMatcher(dict[str, bool]):
    """Answers "does any of these globs select this path?", quickly and with a cache.

    The matcher is its own cache: calling it is a C-level dict lookup once a path has been seen
    (a route's paths repeat exchange after exchange); a new path is matched in `__missing__`.
    """

    __slots__ = ("_patterns",)
    _MAX_CACHED = 10_000

    def __init__(self, globs: Iterable[str]) -> None:
        super().__init__()
        self._patterns = [_compile(g) for g in globs if g]

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def __missing__(self, path: str) -> bool:
        hit = any(p.match(path) for p in self._patterns)
        if len(self) < self._MAX_CACHED:
            self[path] = hit
        return hit

    # `matcher(path)`: the lookup itself, with no Python frame on a cache hit.
    __call__ = dict.__getitem__

    def __hash__(self) -> int:  # type: ignore[override]  # identity is equality, as before
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        return f"PathMatcher({[p.pattern for p in self._patterns]!r})"


def matcher(globs: Iterable[str]) -> PathMatcher:
    """A `PathMatcher` for `globs`, shared by every comparison with the same globs (a route's
    globs are matched against the same paths exchange after exchange)."""
    return _shared_matcher(tuple(globs))


@lru_cache(maxsize=256)
def _shared_matcher(globs: tuple[str, ...]) -> PathMatcher:
    return PathMatcher(globs)


_STEP = re.compile(r'\["((?:[^"\\]|\\.)*)"\]|\[(\d+|\*)\]|([^.\[\]]+)')


@lru_cache(maxsize=8192)
def steps(path: str) -> tuple[str | int, ...]:
    """The steps of a path or glob, in order: keys as strings (quoted ones unescaped), indices as
    ints, ``[*]`` as ``"*"``: ``a.b[3]["c d"]`` → ``("a", "b", 3, "c d")``."""
    out: list[str | int] = []
    for quoted, item, plain in _STEP.findall(path):
        if item:
            out.append("*" if item == "*" else int(item))
        elif quoted:
            out.append(quoted.replace('\\"', '"').replace("\\\\", "\\"))
        else:
            out.append(plain)
    return tuple(out)


def keys(path: str) -> list[str]:
    """The member names along a path, indices dropped: ``a.b[3]["c d"]`` → a, b, c d."""
    return [s for s in steps(path) if isinstance(s, str) and s != "*"]


def last_key(path: str) -> str:
    """The last member name of a path (``trades[3].entry_time`` → ``entry_time``), or ""."""
    names = keys(path)
    return names[-1] if names else ""


def is_inside(path: str, parent: str) -> bool:
    """Whether `path` is strictly inside `parent` (``a.b[2]`` is inside ``a.b``; ``a.bc`` and
    ``a.b`` are not)."""
    return path.startswith(parent) and path[len(parent):len(parent) + 1] in (".", "[")
