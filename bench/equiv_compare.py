"""Equivalence check for comparator speed work: judge many altered body pairs through every
comparator and write each judgement (verdict, reason, and each finding's path, kind, severity,
noise, message and values) as one JSON line. Run it under two checkouts and compare the outputs:
a change that only makes comparators faster leaves them byte-identical.

    git worktree add /tmp/before main
    PYTHONPATH=/tmp/before .venv/bin/python /tmp/before/bench/equiv_compare.py > /tmp/a.jsonl
    .venv/bin/python bench/equiv_compare.py > /tmp/b.jsonl
    cmp /tmp/a.jsonl /tmp/b.jsonl

Bodies: the bench_compare bodies in their three states plus ccxt rows, wrapped candles, orders and
a login answer, altered by random timestamp shifts, scalings, deletions, swaps, type changes,
NaN/infinity and big integers; 1,500 pairs x 6 comparators x 2 tolerances per seed. A line whose
reason says "comparator ... failed" is a comparator bug.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import orjson
from bench_compare import bodies, candles, login, orders

from harness.diff.base import CompareOptions
from harness.judge.engine import Engine
from harness.model import Body, Exchange, Request, Response
from harness.routes import Route

COMPARATORS = ("json", "backtest", "ohlcv", "strategy", "order", "auth")


def leaves(tree, path=()):
    """Every (path, value) of the tree, containers included."""
    yield path, tree
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from leaves(v, (*path, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from leaves(v, (*path, i))


def get(tree, path):
    for step in path:
        tree = tree[step]
    return tree


def mutate(tree, rnd: random.Random):
    """One random alteration of the tree (in place where possible); returns the tree."""
    spots = list(leaves(tree))
    path, value = rnd.choice(spots)
    op = rnd.randrange(14)
    parent = get(tree, path[:-1]) if path else None
    if not path:
        return tree
    key = path[-1]
    if isinstance(value, bool):
        parent[key] = not value if op % 2 else None
    elif isinstance(value, int | float):
        retyped = ((int(value) if math.isfinite(value) else 0) if isinstance(value, float)
                   else float(value))
        choices = [value * (1 + 1e-12), value * (1 + 1e-6), value * 2, value + 1, None, str(value),
                   -value, 0, float("nan"), float("inf"), retyped, 10**25, value * (1 + 5e-10),
                   True]
        parent[key] = choices[op]
    elif isinstance(value, str):
        choices = [value + "x", "", None, value.upper(), value.replace("T", " "),
                   value.replace("Z", "+00:00"), value.replace(":00:00", ":30:00"),
                   "2024-05-01T0" + str(op % 10) + ":00:00Z", 42, value[::-1], "1714521600",
                   "1714521600000", value, [value]]
        parent[key] = choices[op]
    elif isinstance(value, list):
        if value and op < 4:
            del value[rnd.randrange(len(value))]
        elif value and op < 7:
            i, j = rnd.randrange(len(value)), rnd.randrange(len(value))
            value[i], value[j] = value[j], value[i]
        elif value and op < 9:
            value.append(copy.deepcopy(rnd.choice(value)))
        elif value and op < 11:
            value.reverse()
        elif op < 12:
            parent[key] = []
        else:
            parent[key] = {"wrapped": value}
    elif isinstance(value, dict):
        if value and op < 5:
            del value[rnd.choice(list(value))]
        elif op < 8:
            value["extra_field"] = op
        elif op < 10:
            parent[key] = None
        else:
            shift_times(value, rnd.choice([3600, -1800, 7200]))
    return tree


def shift_times(tree, seconds: int) -> None:
    """Move every ISO timestamp below the tree by `seconds`."""
    from datetime import datetime, timedelta

    for path, value in list(leaves(tree)):
        iso = isinstance(value, str) and len(value) >= 19
        if iso and value[4:5] == "-" and value[10:11] == "T":
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            moved = (moment + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
            get(tree, path[:-1])[path[-1]] = moved


def scale_all(tree, factor: float) -> None:
    for path, value in list(leaves(tree)):
        if path and isinstance(value, float):
            get(tree, path[:-1])[path[-1]] = value * factor


def dump(tree) -> bytes:
    try:
        return orjson.dumps(tree)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(tree, allow_nan=True).encode()


def cases(seed: int, count: int):
    rnd = random.Random(seed)
    bases = [(n, b) for n, (_, *states) in bodies().items() if not n.startswith("10k")
             for b in states]
    bases += [("ohlcv rows", [[1714521600000 + 3600_000 * i, *[60000.0 + i] * 4, 1.5]
                              for i in range(30)]),
              ("ohlcv wrapped", {"data": candles(20)}), ("orders", orders(5)),
              ("login", login())]
    for k in range(count):
        name, base = rnd.choice(bases)
        primary = copy.deepcopy(base)
        candidate = copy.deepcopy(base)
        kind = rnd.randrange(10)
        if kind == 0:
            shift_times(candidate, rnd.choice([3600, -3600, 1800]))
        elif kind == 1:
            scale_all(candidate, rnd.choice([1.000001, 1 + 1e-12, 1.01]))
        elif kind == 2:
            shift_times(candidate, 3600)
            scale_all(candidate, 1.000001)
        for _ in range(rnd.choice([0, 1, 1, 2, 3, 5])):
            candidate = mutate(candidate, rnd)
        if rnd.random() < 0.15:
            primary = mutate(primary, rnd)
        yield f"{seed}-{k}-{name}", dump(primary), dump(candidate)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=1500)
    args = parser.parse_args()
    engine = Engine()
    request = Request("GET", "/equiv")
    headers = [("content-type", "application/json")]
    out = sys.stdout
    options = [CompareOptions(), CompareOptions(rtol=1e-6, atol=1e-9)]
    for case, p_raw, c_raw in cases(args.seed, args.count):
        p = Response(200, headers, Body.from_bytes(p_raw))
        c = Response(200, headers, Body.from_bytes(c_raw))
        for comparator in COMPARATORS:
            for n, opts in enumerate(options):
                route = Route("GET", "/equiv", "other", comparator=comparator, options=opts)
                exchange = Exchange(request=request, primary=p, candidate=c, id=case,
                                    route="equiv", group="other", comparator=comparator)
                engine.judge(exchange, route)
                found = [[d.path, d.kind.value, d.severity.value, d.noise, d.message,
                          repr(d.primary)[:200], repr(d.candidate)[:200]]
                         for d in exchange.differences]
                out.write(json.dumps([case, comparator, n, exchange.verdict.value,
                                      exchange.reason, found], default=repr) + "\n")


if __name__ == "__main__":
    main()
