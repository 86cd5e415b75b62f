"""Where the report's exchanges come from: recordings files and directories, dicts, `Exchange`s.

Files are read with the store's `iter_records` when it is available, else with the small
streaming reader here (``.jsonl`` and ``.jsonl.gz``, directories walked in name order; a torn
last line is skipped with a warning, any other unreadable line is an error naming file and line).
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from harness.errors import UserError
from harness.model import Exchange

SUFFIXES = (".jsonl", ".jsonl.gz")


def recording_files(path: Path) -> list[Path]:
    """The segment files of a recording path (the path itself, or the segments below it)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
    return [path]


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of one JSONL segment, streaming."""
    good = 0
    broken: tuple[int, str] | None = None
    with _open(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            if broken is not None:  # a bad line with more after it: not a torn write
                raise UserError(f"{path}:{broken[0]}: not a JSON line ({broken[1]})")
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                broken = (number, str(exc).split(":")[0])
                continue
            good += 1
            yield record
    if broken is not None:
        if not good:
            raise UserError(f"{path}:{broken[0]}: not a JSON line ({broken[1]})")
        print(f"warning: {path}:{broken[0]}: torn last line skipped", file=sys.stderr)


def _store_reader() -> Any:
    try:
        from harness.store.reader import iter_records
    except ImportError:
        return None
    return iter_records


def iter_sources(sources: Iterable[Any]) -> Iterator[dict[str, Any] | Exchange]:
    """Records and exchanges from a mix of paths, dicts and `Exchange` objects, in order."""
    store = _store_reader()
    for source in sources:
        if isinstance(source, dict | Exchange):
            yield source
            continue
        path = Path(source)
        if not path.exists():
            raise UserError(f"recordings not found: {path}")
        if store is not None:
            yield from _guarded(store([path]), path)
            continue
        files = recording_files(path)
        if path.is_dir() and not files:
            raise UserError(f"no recording segments (*.jsonl, *.jsonl.gz) under {path}")
        for file in files:
            yield from _guarded(read_jsonl(file), file)


def _guarded(records: Iterator[Any], path: Path) -> Iterator[Any]:
    """Reading errors become one-line `UserError`s naming the path."""
    try:
        yield from records
    except UserError:
        raise
    except (OSError, EOFError, ValueError) as exc:
        raise UserError(f"cannot read recordings {path}: {exc}") from None
