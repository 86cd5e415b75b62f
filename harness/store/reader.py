"""Streaming reader of recording segments, in constant memory for any size.

A torn last line (a crash mid-write; a restart always opens a new segment) is skipped with a
warning naming the file and line. A bad line with more lines after it is corruption, not a torn
write: that is an error naming file and line, since a silently shorter recording would weaken the
gate."""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from harness.errors import UserError
from harness.model import Exchange

log = logging.getLogger("parity.store")

SEGMENT_SUFFIXES = (".jsonl", ".jsonl.gz")

PathLike = str | os.PathLike[str]


def segment_files(paths: Iterable[PathLike] | PathLike) -> list[Path]:
    """The segment files named by `paths` (files, or directories searched recursively, sorted)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.name.endswith(SEGMENT_SUFFIXES)))
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"recordings not found: {path} (give segment files or a directory)")
    return files


def _lines(path: Path) -> Iterator[bytes]:
    if not path.name.endswith(".gz"):
        with path.open("rb") as handle:
            yield from handle
        return
    with gzip.open(path, "rb") as handle:
        try:
            yield from handle
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            log.warning("%s: torn gzip member at the end skipped (%s)", path, exc)


def iter_records(paths: Iterable[PathLike] | PathLike) -> Iterator[dict[str, Any]]:
    """Every recorded line as a dict, in segment order, streamed. Raises UserError on a corrupt
    line that is not the last one of its segment."""
    for path in segment_files(paths):
        broken: int | None = None
        for number, line in enumerate(_lines(path), start=1):
            if not line.strip():
                continue
            if broken is not None:
                raise UserError(f"{path}:{broken}: not a JSON line (the recording is corrupt)")
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                broken = number
                continue
            if not isinstance(record, dict):
                raise UserError(f"{path}:{number}: not a JSON object")
            yield record
        if broken is not None:
            log.warning("%s:%d: torn last line skipped", path, broken)


def read_exchanges(paths: Iterable[PathLike] | PathLike) -> Iterator[Exchange]:
    """Every recorded exchange as an `Exchange`, streamed."""
    for record in iter_records(paths):
        try:
            yield Exchange.from_dict(record)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("record %s is not an exchange, skipped: %s", record.get("id", "?"), exc)


def count_records(paths: Iterable[PathLike] | PathLike) -> int:
    """How many lines the segments hold (cheap: no parsing), for progress bars."""
    total = 0
    for path in segment_files(paths):
        try:
            total += sum(1 for line in _lines(path) if line.strip())
        except OSError:
            continue
    return total
