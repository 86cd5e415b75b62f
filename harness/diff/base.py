"""What every comparator shares: the lifted answer it compares, its options, and the registry.

A comparator is a callable ``(primary: Lifted, candidate: Lifted, options: CompareOptions) ->
list[Difference]``, registered by name with :func:`register`. It raises :class:`Incomparable` when
the two answers cannot be compared at all (the exchange is then recorded ``incomparable`` with the
reason). Comparators only diff; judging noise and giving the verdict is the engine's job.

Comparators must not change the lifted bodies: the engine shares one parsed body between
byte-identical answers. A comparator that judges two answers with the same status and body bytes
by their headers alone says so when it registers, ``register(name, identical_is_match=True)`` (or
a predicate of the route's options, when some options make it read identical bodies too: keys to
verify tokens with); the engine then skips parsing them and calls it with bodiless answers
(``kind`` "empty").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.model import Difference

BodyKind = Literal["json", "text", "bytes", "empty"]


class Incomparable(Exception):
    """The two answers cannot be compared; the message says why (it is recorded as the reason)."""


@dataclass(slots=True)
class Lifted:
    """An answer lifted into a neutral tree (Diffy's *lift*): status, lower-cased headers and the
    body parsed as JSON when it is JSON, else text or bytes.

    ``headers`` maps a lower-cased name to its values (a list, since Set-Cookie repeats).
    ``parse_error`` is set when the body claimed to be JSON but did not parse.
    """

    status: int
    headers: dict[str, list[str]] = field(default_factory=dict)
    kind: BodyKind = "empty"
    body: Any = None
    raw: bytes = b""
    parse_error: str | None = None

    def header(self, name: str) -> str | None:
        """First value of header `name` (any case), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None


@dataclass(frozen=True, slots=True)
class CompareOptions:
    """Options of one route's comparison. ``None`` means "the comparator's own default"."""

    rtol: float | None = None
    atol: float | None = None
    # Globs over difference paths: "items[*].created_at", "metrics.*", "**.id".
    ignore: tuple[str, ...] = ()
    # Globs naming lists compared as multisets: "strategies", "data[*].tags".
    unordered: tuple[str, ...] = ()
    # Extra header names to ignore on top of the volatile defaults.
    ignore_headers: tuple[str, ...] = ()
    # Compare headers at all (most APIs: only content-type matters).
    compare_headers: bool = True
    # Comparator-specific settings (e.g. auth's "lifetime_tolerance", "keys").
    extra: Mapping[str, Any] = field(default_factory=dict)

    def tol(self, rtol: float, atol: float) -> tuple[float, float]:
        """The route's tolerances, falling back to the comparator's defaults."""
        return (
            rtol if self.rtol is None else self.rtol,
            atol if self.atol is None else self.atol,
        )


Comparator = Callable[[Lifted, Lifted, CompareOptions], list[Difference]]

_REGISTRY: dict[str, Comparator] = {}
# The built-in comparators, imported on first use: their names are known without loading numpy,
# pandas and deepdiff (the shadow proxy validates its configuration but never compares).
BUILTIN = {
    "json": "comparators.generic",
    "backtest": "comparators.backtest",
    "order": "comparators.order",
    "auth": "comparators.auth",
    "ohlcv": "comparators.ohlcv",
    "strategy": "comparators.strategy",
}


IdenticalIsMatch = bool | Callable[["CompareOptions"], bool]
_IDENTICAL_IS_MATCH: dict[Comparator, IdenticalIsMatch] = {}


def identical_is_match(compare: Comparator, options: CompareOptions) -> bool:
    """Whether `compare` judges answers with one status and body bytes by their headers alone
    under `options` (as it said when registered; see the module docstring)."""
    declared = _IDENTICAL_IS_MATCH.get(compare, False)
    return bool(declared(options) if callable(declared) else declared)


def register(name: str, *, identical_is_match: IdenticalIsMatch = False
             ) -> Callable[[Comparator], Comparator]:
    """Class/function decorator: make a comparator available under `name`; `identical_is_match`
    (True, or a predicate of the route's options) lets the engine judge byte-identical answers by
    their headers alone."""

    def decorate(fn: Comparator) -> Comparator:
        _REGISTRY[name] = fn
        if identical_is_match:
            _IDENTICAL_IS_MATCH[fn] = identical_is_match
        return fn

    return decorate


def get(name: str) -> Comparator:
    """The comparator registered under `name`; KeyError naming the known ones otherwise."""
    if name not in _REGISTRY and name in BUILTIN:
        importlib.import_module(BUILTIN[name])  # registers it
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown comparator {name!r} (known: {', '.join(names())})") from None


def names() -> list[str]:
    """Names of all comparators: the built-in ones and those registered."""
    return sorted(set(_REGISTRY) | set(BUILTIN))
