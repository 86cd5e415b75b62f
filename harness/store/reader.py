"""Streaming reader of recording segments, in constant memory for any size.

Files may be plain JSONL or gzip (sniffed by content, not by name; a multi-member gzip whose last
member is torn is fine). A torn last line of a segment (a crash mid-write; the writer never
appends after one) is skipped with a warning naming the file and line. A bad line with good lines
after it is corruption, not an interrupted write: by default that is a UserError naming file and
line, since a silently shorter recording would weaken the gate; with `strict=False` it is skipped
with a warning and reading goes on. Pass a `ReadStats` to count what was read and skipped.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from harness.errors import UserError
from harness.model import Exchange

log = logging.getLogger("parity.store")

SEGMENT_SUFFIXES = (".jsonl", ".jsonl.gz")
PathLike = str | os.PathLike[str]

_GZIP_MAGIC = b"\x1f\x8b"
_MEMBER_MAGIC = b"\x1f\x8b\x08"  # gzip magic + deflate, where a member may start
_CHUNK = 16 * 1024  # compressed bytes per step: at most ~16 MiB of output even for a bomb
_SEGMENT_NAME = re.compile(
    r"^(?P<prefix>.*)-(?P<stamp>\d{8}T\d{6})-(?P<pid>\d+)-(?P<seq>\d+)\.jsonl(?:\.gz)?$"
)


@dataclass(slots=True)
class ReadStats:
    """What a read went through; filled in as records are read."""

    files: int = 0
    records: int = 0
    torn: int = 0  # torn last lines (interrupted writes), skipped
    corrupt: int = 0  # bad lines with good ones after them, skipped
    not_exchanges: int = 0  # JSON objects `read_exchanges` could not turn into an Exchange

    @property
    def skipped(self) -> int:
        return self.torn + self.corrupt + self.not_exchanges


def _segment_order(path: Path) -> tuple[str, str, str, int, int]:
    """Segments of a directory in the order they were opened: by UTC time of opening, then
    prefix, pid and sequence number as numbers (pid 999 before pid 1000)."""
    match = _SEGMENT_NAME.match(path.name)
    if match is None:
        return (str(path.parent), "", path.name, 0, 0)
    return (str(path.parent), match["stamp"], match["prefix"], int(match["pid"]),
            int(match["seq"]))


def segment_files(paths: Iterable[PathLike] | PathLike) -> list[Path]:
    """The files named by `paths`: files as given, directories searched recursively for
    ``*.jsonl`` / ``*.jsonl.gz`` in segment order. UserError when a path does not exist."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.name.endswith(SEGMENT_SUFFIXES)
                     and p.is_file()]
            files.extend(sorted(found, key=_segment_order))
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"recordings not found: {path} (give segment files or a directory)")
    return files


def files_beside(paths: Iterable[PathLike], pattern: str) -> Iterator[Path]:
    """The files named `pattern` (a glob) in the directories among `paths`, searched
    recursively like the segments: what a run saved beside its recordings (counters, specs)."""
    for item in paths:
        path = Path(item)
        if path.is_dir():
            yield from sorted(path.rglob(pattern))


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise UserError(f"cannot read recordings {path}: {exc.strerror or exc}") from None


def _is_gzip(path: Path) -> bool:
    with _open(path) as handle:
        return bool(handle.read(2) == _GZIP_MAGIC)


def _plain_lines(path: Path) -> Iterator[bytes | None]:
    with _open(path) as handle:
        yield from handle


def _gzip_lines(path: Path) -> Iterator[bytes | None]:
    """The lines of a (multi-member) gzip file, streamed. A member that does not decompress
    yields None in place of its line(s), and reading resumes at the next member header; a torn
    last member yields what it decompressed to (or None)."""
    pending = bytearray()  # decompressed bytes of a line not yet complete
    with _open(path) as handle:
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        fed = False  # whether the current decoder has had input
        data = b""
        while True:
            if not data:
                data = handle.read(_CHUNK)
                if not data:
                    break
            member_starts_here = not fed
            try:
                out = decoder.decompress(data)
            except zlib.error:
                yield None
                pending.clear()
                data = _resync(handle, data, skip_first=member_starts_here)
                decoder, fed = zlib.decompressobj(16 + zlib.MAX_WBITS), False
                continue
            fed = True
            if out:
                pending += out
                start = 0
                while (end := pending.find(b"\n", start)) >= 0:
                    yield bytes(pending[start : end + 1])
                    start = end + 1
                del pending[:start]
            if decoder.eof:
                data = decoder.unused_data
                decoder, fed = zlib.decompressobj(16 + zlib.MAX_WBITS), False
            else:
                data = b""
        if pending:
            yield bytes(pending)
        elif fed:
            yield None  # a member cut before it gave a byte of its line


def _resync(handle: BinaryIO, data: bytes, *, skip_first: bool) -> bytes:
    """`data` (and what follows in `handle`) from the next gzip member header on, or b"" at EOF."""
    index = data.find(_MEMBER_MAGIC, 1 if skip_first else 0)
    while index < 0:
        more = handle.read(_CHUNK)
        if not more:
            return b""
        data = data[-2:] + more  # a header may straddle two chunks
        index = data.find(_MEMBER_MAGIC)
    return data[index:]


def _lines(path: Path) -> Iterator[bytes | None]:
    return _gzip_lines(path) if _is_gzip(path) else _plain_lines(path)


def _parse(line: bytes | None) -> dict[str, Any] | None:
    if line is None:
        return None
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _records_of(path: Path, strict: bool, stats: ReadStats) -> Iterator[dict[str, Any]]:
    bad: int | None = None  # the last bad line; torn if nothing good follows it

    def corrupt(number: int) -> None:
        if strict:
            raise UserError(f"{path}:{number}: not a JSON line (the recording is corrupt, not "
                            "just cut short at the end)")
        log.warning("%s:%d: corrupt line skipped (not a JSON object)", path, number)
        stats.corrupt += 1

    for number, line in enumerate(_lines(path), start=1):
        if line is not None and not line.strip():
            continue
        record = _parse(line)
        if bad is not None:
            corrupt(bad)
            bad = None
        if record is None:
            bad = number
            continue
        stats.records += 1
        yield record
    if bad is not None:
        log.warning("%s:%d: torn last line skipped (an interrupted write)", path, bad)
        stats.torn += 1


def iter_records(
    paths: Iterable[PathLike] | PathLike,
    *,
    strict: bool = True,
    stats: ReadStats | None = None,
) -> Iterator[dict[str, Any]]:
    """Every recorded line as a dict (the `Exchange.to_dict` form), in segment order, streamed.
    A torn last line is skipped with a warning; a corrupt line in the middle is a UserError, or
    with `strict=False` skipped with a warning."""
    stats = stats if stats is not None else ReadStats()
    for path in segment_files(paths):
        stats.files += 1
        yield from _records_of(path, strict, stats)


def read_exchanges(
    paths: Iterable[PathLike] | PathLike,
    *,
    strict: bool = True,
    stats: ReadStats | None = None,
) -> Iterator[Exchange]:
    """Every recorded exchange as an `Exchange`, streamed; records that are not exchanges are
    skipped with a warning."""
    stats = stats if stats is not None else ReadStats()
    for record in iter_records(paths, strict=strict, stats=stats):
        try:
            yield Exchange.from_dict(record)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            stats.not_exchanges += 1
            log.warning("record %s is not an exchange, skipped: %s", record.get("id", "?"), exc)


def count_records(paths: Iterable[PathLike] | PathLike) -> int:
    """About how many records the segments hold (lines, not parsed), for progress bars.
    Cheap for plain segments; gzip ones are decompressed but not parsed."""
    total = 0
    for path in segment_files(paths):
        if _is_gzip(path):
            total += sum(1 for line in _gzip_lines(path) if line is None or line.strip())
            continue
        with _open(path) as handle:
            last = b"\n"
            while chunk := handle.read(1 << 20):
                total += chunk.count(b"\n")
                last = chunk
            if not last.endswith(b"\n"):
                total += 1  # a last line without its newline
    return total
