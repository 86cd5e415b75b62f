"""Where the report's exchanges come from: recordings files and directories (read by the
store's streaming reader), record dicts and `Exchange` objects. Also what the shadow proxy did
not mirror, from the counter files it leaves beside its segments, and the cutover's timeline,
from its state file."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from harness.errors import UserError
from harness.model import Exchange
from harness.shadow import counters as c
from harness.store.reader import files_beside, iter_records, segment_files

log = logging.getLogger("parity.report")

# What a report reads: recordings (files or directories), record dicts or exchanges.
Source = str | Path | dict[str, Any] | Exchange

COUNTERS_GLOB = "shadow-counters-*.json"  # written by the shadow addon, one per proxy run
CUTOVER_GLOB = "parity-cutover.json"  # the cutover's state, beside the recordings by default
# The shadow proxy's accounting, as shown in the report's "Not mirrored" section: key, label.
# The requests it answered, then what became of each (the outcomes add up to them), then the
# worker restarts (an event, not an outcome).
NOT_MIRRORED = (
    (c.ANSWERED, "requests answered by the proxy"),
    *c.OUTCOMES,
    (c.RESTARTS, "worker restarts (what a dead worker held is counted abandoned)"),
)
# Rows that are expected to be non-zero (not highlighted).
EXPECTED = frozenset({c.ANSWERED, c.COMPARED, c.SKIPPED, c.NOT_SAMPLED})


def not_mirrored_rows(counts: dict[str, int]) -> list[tuple[str, str, int, bool]]:
    """(key, label, count, worth a look) of every row of the "Not mirrored" section, plus an
    "unaccounted" row when the outcomes do not add up to the requests answered (a proxy that
    was killed, or a counters file from before every request had an outcome)."""
    rows = [(key, label, counts.get(key, 0), bool(counts.get(key, 0)) and key not in EXPECTED)
            for key, label in NOT_MIRRORED]
    missing = counts.get(c.ANSWERED, 0) - c.accounted(counts)
    if counts.get(c.ANSWERED, 0) and missing:
        rows.insert(len(c.OUTCOMES) + 1, ("unaccounted", "unaccounted (in flight, or lost)",
                                          missing, True))
    return rows


def iter_sources(sources: Iterable[Source]) -> Iterator[dict[str, Any] | Exchange]:
    """Records and exchanges from a mix of paths, dicts and `Exchange` objects, in order."""
    for source in sources:
        if isinstance(source, dict | Exchange):
            yield source
            continue
        path = Path(source)
        if path.is_dir() and not segment_files(path):
            raise UserError(f"no recording segments (*.jsonl, *.jsonl.gz) under {path}")
        yield from _guarded(iter_records([path]), path)


def _guarded(records: Iterator[dict[str, Any]], path: Path) -> Iterator[dict[str, Any]]:
    """Reading errors become one-line `UserError`s naming the path."""
    try:
        yield from records
    except UserError:
        raise
    except (OSError, EOFError, ValueError) as exc:
        raise UserError(f"cannot read recordings {path}: {exc}") from None


def shadow_counters(paths: Iterable[str | Path]) -> dict[str, int] | None:
    """The counter totals of every shadow proxy run whose counter file
    (``shadow-counters-*.json``) lies in the directories among `paths` (searched recursively,
    like the segments), summed; None when there is none. Unreadable files are skipped with a
    warning: they must not stop the report."""
    totals: Counter[str] = Counter()
    found = False
    for file in files_beside(paths, COUNTERS_GLOB):
        try:
            counts = orjson.loads(file.read_bytes())["totals"]
            totals.update({str(k): int(v) for k, v in counts.items()})
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError,
                AttributeError) as exc:
            log.warning("%s: not a shadow counters file, ignored: %s", file, exc)
            continue
        found = True
    if not found:
        return None
    return {key: totals[key] for key, _ in NOT_MIRRORED}


def cutover_timeline(paths: Iterable[str | Path]) -> dict[str, Any] | None:
    """The cutover state saved beside the recordings (harness/cutover/state.py), as the report
    shows it: each group's share and last rollback, and the events (advances, rollbacks with
    the findings that caused them, resumes) in order. Never its hash key. None without one."""
    for file in files_beside(paths, CUTOVER_GLOB):
        try:
            data = orjson.loads(file.read_bytes())
            groups = {str(name): {"share": float(g["share"]), "adopters": bool(g["adopters"]),
                                  "last_rollback": g.get("last_rollback")}
                      for name, g in data["groups"].items()}
            history = [{"at": datetime.fromtimestamp(float(e["at"]), UTC).isoformat(
                            timespec="milliseconds"),
                        "group": str(e["group"]), "event": str(e["event"]),
                        "share": float(e["share"]), "reason": str(e.get("reason") or ""),
                        "automatic": bool(e.get("automatic"))} for e in data["history"]]
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError,
                AttributeError) as exc:
            log.warning("%s: not a cutover state file, ignored: %s", file, exc)
            continue
        return {"file": str(file), "groups": groups, "history": history,
                "rollbacks": int(data.get("rollbacks", 0))}
    return None
