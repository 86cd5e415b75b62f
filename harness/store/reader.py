"""Streaming reader of recording segments: constant memory for any size; a torn or corrupt line
(a crash mid-write) is skipped with a warning naming the file and line, and reading goes on."""

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
    """Every recorded exchange as a dict, in segment order, streamed."""
    for path in segment_files(paths):
        for number, line in enumerate(_lines(path), start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("%s:%d: torn or corrupt line skipped", path, number)
                continue
            if not isinstance(record, dict) or "request" not in record:
                log.warning("%s:%d: not an exchange record, skipped", path, number)
                continue
            yield record


def read_exchanges(paths: Iterable[PathLike] | PathLike) -> Iterator[Exchange]:
    """Every recorded exchange as an `Exchange`, streamed."""
    for record in iter_records(paths):
        try:
            yield Exchange.from_dict(record)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("record %s skipped: %s", record.get("id", "?"), exc)


def count_records(paths: Iterable[PathLike] | PathLike) -> int:
    """How many lines the segments hold (cheap: no parsing), for progress bars."""
    total = 0
    for path in segment_files(paths):
        try:
            total += sum(1 for line in _lines(path) if line.strip())
        except OSError:
            continue
    return total
