"""Append-only JSONL segments: one exchange per line, redacted and capped before it is written,
flushed as written, rotated by size and age. A restart always opens a new segment."""

from __future__ import annotations

import gzip
import os
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import orjson

from harness.model import Body, Exchange, Response
from harness.store.redact import redact_exchange

DEFAULT_BODY_CAP = 1024 * 1024


class StoreError(Exception):
    """Recording failed (disk full, permissions...): the caller must stop mirroring loudly."""


def cap_body(body: Body, cap: int) -> Body:
    """`body` cut to `cap` bytes, keeping its full size and digest."""
    raw = body.raw
    if len(raw) <= cap:
        return body
    capped = Body.from_bytes(raw[:cap])
    return replace(capped, size=body.size, sha256=body.sha256, truncated=True,
                   decode_error=body.decode_error)


def _cap_response(response: Response | None, cap: int) -> Response | None:
    if response is None:
        return None
    return replace(response, body=cap_body(response.body, cap))


def prepare(exchange: Exchange, body_cap: int) -> bytes:
    """The line written for `exchange`: redacted, bodies capped, JSON, newline-terminated."""
    safe = redact_exchange(exchange)
    safe = replace(
        safe,
        request=replace(safe.request, body=cap_body(safe.request.body, body_cap)),
        primary=_cap_response(safe.primary, body_cap),
        candidate=_cap_response(safe.candidate, body_cap),
        secondary=_cap_response(safe.secondary, body_cap),
    )
    return orjson.dumps(safe.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


class SegmentWriter:
    """Writes exchanges to `directory/{prefix}-{UTC time}-{pid}-{seq}.jsonl[.gz]`; thread-safe.

    With `compress`, each line is its own gzip member, so a crash loses at most the line being
    written and every completed line stays readable.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        prefix: str = "exchanges",
        compress: bool = False,
        max_bytes: int = 64 * 1024 * 1024,
        max_age_s: float = 3600.0,
        body_cap: int = DEFAULT_BODY_CAP,
    ) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.compress = compress
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.body_cap = body_cap
        self.written = 0
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._opened_at = 0.0
        self._size = 0
        self._seq = 0
        self.segments: list[Path] = []
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create recordings directory {self.directory}: {exc}") from exc

    def _open(self) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        suffix = ".jsonl.gz" if self.compress else ".jsonl"
        while True:
            self._seq += 1
            path = self.directory / f"{self.prefix}-{stamp}-{os.getpid()}-{self._seq:04d}{suffix}"
            if not path.exists():
                break
        try:
            # "xb": never append into an existing segment.
            self._file = open(path, "xb")  # noqa: SIM115 - kept open across writes
        except OSError as exc:
            raise StoreError(f"cannot open segment {path}: {exc}") from exc
        self.segments.append(path)
        self._opened_at = time.monotonic()
        self._size = 0

    def _rotate_if_due(self) -> None:
        if self._file is None:
            self._open()
        elif self._size >= self.max_bytes or time.monotonic() - self._opened_at >= self.max_age_s:
            self._file.close()
            self._open()

    def write(self, exchange: Exchange) -> None:
        """Record one exchange (redacted, capped), flushed before returning."""
        line = prepare(exchange, self.body_cap)
        if self.compress:
            line = gzip.compress(line, compresslevel=5, mtime=0)
        with self._lock:
            self._rotate_if_due()
            try:
                self._file.write(line)
                self._file.flush()
            except OSError as exc:
                raise StoreError(f"writing {self.segments[-1]} failed: {exc}") from exc
            self._size += len(line)
            self.written += 1

    def close(self) -> None:
        """Flush and close the current segment."""
        with self._lock:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError as exc:
                    raise StoreError(f"closing {self.segments[-1]} failed: {exc}") from exc
                self._file = None

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
