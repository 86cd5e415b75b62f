"""Where the report's exchanges come from: recordings files and directories (read by the
store's streaming reader), record dicts and `Exchange` objects."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.model import Exchange
from harness.store.reader import iter_records, segment_files


def iter_sources(sources: Iterable[Any]) -> Iterator[dict[str, Any] | Exchange]:
    """Records and exchanges from a mix of paths, dicts and `Exchange` objects, in order."""
    for source in sources:
        if isinstance(source, dict | Exchange):
            yield source
            continue
        path = Path(source)
        if path.is_dir() and not segment_files(path):
            raise UserError(f"no recording segments (*.jsonl, *.jsonl.gz) under {path}")
        yield from _guarded(iter_records([path]), path)


def _guarded(records: Iterator[Any], path: Path) -> Iterator[Any]:
    """Reading errors become one-line `UserError`s naming the path."""
    try:
        yield from records
    except UserError:
        raise
    except (OSError, EOFError, ValueError) as exc:
        raise UserError(f"cannot read recordings {path}: {exc}") from None
