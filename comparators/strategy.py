"""The `strategy` comparator: strategy CRUD answers (one strategy, a list of them, a version
history, delete and error answers).

- Ids are ignored by default (``id``, ``strategy_id``): during a shadow run the primary and the
  candidate write to different databases, the correlation map substitutes ids in *requests*, and
  the ids in *answers* may legitimately differ. Set ``extra["compare_ids"] = true`` on a route
  whose ids must agree (both databases restored from one dump, say).
- ``created_at``/``updated_at`` (and other write timestamps) are ignored.
- Lists of strategies are compared in any order, matched by id when both answers list the same
  ids (they agree those are the same objects), else by name; a strategy missing from one list is
  one difference naming it.
- Versions are compared in order (version 1 first); parameter changes are reported by path:
  ``versions[1].parameters.lookback 14 vs 10``, numbers within rtol 1e-9 / atol 1e-12.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from harness.diff import paths
from harness.diff.base import CompareOptions, Lifted, register
from harness.diff.values import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    compare_answers,
    derived,
    generic_bodies,
    generic_pairs,
    show,
)
from harness.model import Difference, Kind

IDS = ("id", "strategy_id")
TIMESTAMPS = (
    "created_at",
    "updated_at",
    "deleted_at",
    "activated_at",
    "deactivated_at",
)
LIST_KEYS = ("strategies", "items", "data", "results")


@register("strategy", identical_is_match=True)
def compare_strategy(
    primary: Lifted, candidate: Lifted, options: CompareOptions
) -> list[Difference]:
    """Compare two strategy-service answers (see the module docstring)."""
    return compare_answers(primary, candidate, _options(options), _bodies)


def _options(options: CompareOptions) -> CompareOptions:
    """The route's options with the comparator's defaults: volatile fields and tolerances."""
    return derived(options, "strategy", _with_defaults)


def _with_defaults(options: CompareOptions) -> CompareOptions:
    ignored = [f"**.{name}" for name in TIMESTAMPS]
    if not options.extra.get("compare_ids"):
        ignored += [f"**.{name}" for name in IDS]
    rtol, atol = options.tol(DEFAULT_RTOL, DEFAULT_ATOL)
    extra = tuple(g for g in ignored if g not in options.ignore)
    return dataclasses.replace(options, ignore=options.ignore + extra, rtol=rtol, atol=atol)


def _bodies(primary: Lifted, candidate: Lifted, options: CompareOptions) -> list[Difference]:
    return compare_tree("", primary.body, candidate.body, options)


def compare_tree(path: str, p: Any, c: Any, options: CompareOptions) -> list[Difference]:
    """Strategy lists matched by identity wherever they appear; everything else generic."""
    if _both_strategy_lists(p, c):
        return compare_strategy_lists(path, p, c, options)
    if isinstance(p, dict) and isinstance(c, dict):
        lists = [k for k in LIST_KEYS if _both_strategy_lists(p.get(k), c.get(k))]
        if lists:
            differences = generic_bodies(
                {k: v for k, v in p.items() if k not in lists},
                {k: v for k, v in c.items() if k not in lists},
                options,
                path=path,
            )
            for k in lists:
                differences += compare_strategy_lists(paths.key(path, k), p[k], c[k], options)
            return differences
    return generic_bodies(p, c, options, path=path)


def _both_strategy_lists(p: Any, c: Any) -> bool:
    """Two lists of strategies (one of them may be empty)."""
    return (is_strategy_list(p) or p == []) and (is_strategy_list(c) or c == []) and bool(p or c)


def is_strategy_list(value: Any) -> bool:
    """A list of strategy objects (each with a name or an id, and no version number of its own
    unless it is a whole strategy): not a version history, which is compared in order."""
    if not isinstance(value, list) or not value:
        return False
    return all(
        isinstance(v, dict) and ("name" in v or ("id" in v and "version" not in v)) for v in value
    )


def compare_strategy_lists(
    path: str, p: list[dict], c: list[dict], options: CompareOptions
) -> list[Difference]:
    """Two lists of strategies in any order, matched by id (when the ids agree) or by name."""
    p_keys, c_keys, what = _identity(p, c, options)
    pairs, missing, extra = _match(p, c, p_keys, c_keys)
    differences = generic_pairs([(p[i], c[j], paths.index(path, i)) for i, j in pairs], options)
    for i in missing:
        differences.append(
            Difference(
                paths.index(path, i),
                Kind.MISSING,
                _summary(p[i]),
                None,
                f"strategy {what(p[i])} missing from the candidate's list",
            )
        )
    for j in extra:
        differences.append(
            Difference(
                paths.index(path, j),
                Kind.EXTRA,
                None,
                _summary(c[j]),
                f"strategy {what(c[j])} only in the candidate's list",
            )
        )
    return differences


Describe = Callable[[dict], str]


def _identity(
    p: list[dict], c: list[dict], options: CompareOptions
) -> tuple[list[str], list[str], Describe]:
    """How to match strategies across the lists (each one's key, primary's and candidate's), and
    how to name one in a message."""
    p_shown = [repr(v.get("id")) for v in p]  # repr: 1 and 1.0 and True are different ids
    c_shown = [repr(v.get("id")) for v in c]
    unique = set(p_shown)
    # Every primary id once, and the candidate's the same ids once each (the Counters equal).
    ids_agree = (
        "None" not in unique
        and len(unique) == len(p_shown) == len(c_shown)
        and unique == set(c_shown)
    )
    if options.extra.get("compare_ids") or ids_agree or not all("name" in v for v in p + c):
        return p_shown, c_shown, lambda v: f"id {show(v.get('id'))}" + _name(v)
    p_names = [repr(v.get("name")) for v in p]
    c_names = [repr(v.get("name")) for v in c]
    return p_names, c_names, lambda v: show(v.get("name"))


def _name(v: dict) -> str:
    return f" ({show(v['name'])})" if "name" in v else ""


def _match(
    p: list[dict], c: list[dict], p_keys: list[str], c_keys: list[str]
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """(primary, candidate) index pairs with one key, then the unmatched of each side. Among
    strategies sharing a key (two named alike), identical ones pair first, the rest in order."""
    c_at = dict(zip(c_keys, range(len(c_keys)), strict=True))
    p_has = set(p_keys)
    if len(p_has) == len(p_keys) and len(c_at) == len(c_keys):
        # No two strategies of one list share a key (the usual lists): one pass each way.
        pairs = [(i, c_at[k]) for i, k in enumerate(p_keys) if k in c_at]
        return (pairs, [i for i, k in enumerate(p_keys) if k not in c_at],
                [j for j, k in enumerate(c_keys) if k not in p_has])
    groups: dict[Any, tuple[list[int], list[int]]] = {}
    for i, k in enumerate(p_keys):
        groups.setdefault(k, ([], []))[0].append(i)
    for j, k in enumerate(c_keys):
        groups.setdefault(k, ([], []))[1].append(j)
    pairs, missing, extra = [], [], []
    for p_idx, c_idx in groups.values():
        if len(p_idx) > 1 or len(c_idx) > 1:
            c_left = list(c_idx)
            p_left = []
            for i in p_idx:
                same = next((j for j in c_left if _content(p[i]) == _content(c[j])), None)
                if same is None:
                    p_left.append(i)
                else:
                    pairs.append((i, same))
                    c_left.remove(same)
            p_idx, c_idx = p_left, c_left
        pairs += zip(p_idx, c_idx, strict=False)
        missing += p_idx[len(c_idx) :]
        extra += c_idx[len(p_idx) :]
    return sorted(pairs), sorted(missing), sorted(extra)


def _content(item: Any) -> Any:
    """An item without its ids and timestamps, for telling twins apart."""
    if isinstance(item, dict):
        return {k: _content(v) for k, v in item.items() if k not in IDS + TIMESTAMPS}
    if isinstance(item, list):
        return [_content(v) for v in item]
    return item


def _summary(item: dict) -> dict:
    """What a missing/extra strategy is shown as: its identity, not its whole body."""
    return {k: item[k] for k in ("id", "name", "version", "is_active") if k in item}
