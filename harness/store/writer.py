"""Append-only JSONL segments: one exchange per line, redacted and capped before it is serialised,
flushed as written, rotated by size and age.

Crash safety: every line is flushed to the operating system before `write` returns, so a killed
process (kill -9, OOM) loses at most the line being written, which the reader skips as a torn
last line. Lines are not fsynced: a power cut may lose what the kernel had not written yet. A
restart, and a write error, always open a new segment, so a torn line can only be the last line
of its segment.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import os
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from harness.model import Body, Exchange, Response
from harness.store.redact import redact_exchange

DEFAULT_BODY_CAP = 1024 * 1024
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_AGE_S = 3600.0
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class StoreError(Exception):
    """Recording failed (disk full, permissions...): the caller must stop mirroring loudly."""


def cap_body(body: Body, cap: int) -> Body:
    """`body` cut to at most `cap` bytes, keeping its full `size` and `sha256` and marking it
    `truncated`. Text is cut at a character boundary, so it stays text."""
    if body.text is not None:
        if len(body.text) * 4 <= cap:  # fast path: no UTF-8 text of this length can exceed it
            return body
        raw = body.text.encode("utf-8")
        if len(raw) <= cap:
            return body
        # raw came from valid text, so "ignore" only drops the character cut in half.
        return replace(body, text=raw[:cap].decode("utf-8", "ignore"), truncated=True)
    if body.b64 is not None and len(body.b64) * 3 // 4 > cap:
        raw = base64.b64decode(body.b64)
        if len(raw) > cap:
            return replace(body, b64=base64.b64encode(raw[:cap]).decode("ascii"), truncated=True)
    return body


def _cap_response(response: Response | None, cap: int) -> Response | None:
    if response is None:
        return None
    return replace(response, body=cap_body(response.body, cap))


def _json_default(value: Any) -> Any:
    """Values orjson cannot write (Decimal, set, custom objects in differences) as text/lists."""
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def prepare(exchange: Exchange, body_cap: int = DEFAULT_BODY_CAP) -> bytes:
    """The line written for `exchange`: redacted, bodies capped, JSON, newline-terminated.

    Redaction runs on the whole body first (a parsed JSON body is redacted exactly; a cut one
    only by pattern), then the body is capped."""
    safe = redact_exchange(exchange)
    safe = replace(
        safe,
        request=replace(safe.request, body=cap_body(safe.request.body, body_cap)),
        primary=_cap_response(safe.primary, body_cap) or Response(),
        candidate=_cap_response(safe.candidate, body_cap),
        secondary=_cap_response(safe.secondary, body_cap),
    )
    try:
        return orjson.dumps(safe.to_dict(), default=_json_default, option=_JSON_OPTIONS) + b"\n"
    except orjson.JSONEncodeError as exc:
        raise StoreError(f"cannot serialise exchange {exchange.id}: {exc}") from exc


class SegmentWriter:
    """Writes exchanges to ``directory/{prefix}-{UTC yyyymmddTHHMMSS}-{pid}-{seq:04d}.jsonl``
    (``.jsonl.gz`` with `compress`). Thread-safe; a context manager.

    A segment is closed and a new one opened when it would grow past `max_bytes` or is older
    than `max_age_s`. With `compress`, each line is its own gzip member (a valid multi-member
    gzip file at every moment), so a crash loses at most the line being written. Bodies are
    redacted, then cut to `body_cap` bytes (full size and sha256 kept). Every failure to create,
    write or close a segment raises `StoreError`.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        prefix: str = "exchanges",
        compress: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        body_cap: int = DEFAULT_BODY_CAP,
    ) -> None:
        if max_bytes <= 0 or max_age_s <= 0 or body_cap < 0:
            raise ValueError("max_bytes and max_age_s must be positive, body_cap not negative")
        self.directory = Path(directory)
        self.prefix = prefix
        self.compress = compress
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.body_cap = body_cap
        self.written = 0  # exchanges written by this writer
        self.segments: list[Path] = []  # every segment this writer opened, in order
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._opened_at = 0.0
        self._size = 0
        self._seq = 0
        self._closed = False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create recordings directory {self.directory}: {exc}") from exc

    @property
    def path(self) -> Path | None:
        """The segment being written, if one is open."""
        return self.segments[-1] if self._file is not None else None

    def _open(self) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        suffix = ".jsonl.gz" if self.compress else ".jsonl"
        while True:
            self._seq += 1
            path = self.directory / f"{self.prefix}-{stamp}-{os.getpid()}-{self._seq:04d}{suffix}"
            try:
                # "x": never append into an existing segment, whoever wrote it.
                self._file = open(path, "xb")  # noqa: SIM115 - kept open across writes
            except FileExistsError:
                continue
            except OSError as exc:
                raise StoreError(f"cannot create segment {path}: {exc}") from exc
            break
        self.segments.append(path)
        self._opened_at = time.monotonic()
        self._size = 0

    def _close_segment(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            try:
                handle.close()
            except OSError as exc:
                raise StoreError(f"closing segment {self.segments[-1]} failed: {exc}") from exc

    def _abandon_segment(self) -> None:
        """After a failed write the segment may end in a torn line: never write after it."""
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()

    def _segment_for(self, size: int) -> BinaryIO:
        if self._file is not None and self._size > 0 and (
            self._size + size > self.max_bytes
            or time.monotonic() - self._opened_at >= self.max_age_s
        ):
            self._close_segment()
        if self._file is None:
            self._open()
        assert self._file is not None
        return self._file

    def write(self, exchange: Exchange) -> None:
        """Record one exchange (redacted, capped); it is flushed before this returns."""
        line = prepare(exchange, self.body_cap)  # outside the lock: redaction is the costly part
        if self.compress:
            line = gzip.compress(line, compresslevel=5, mtime=0)
        with self._lock:
            if self._closed:
                raise StoreError(f"writing to {self.directory} after the writer was closed")
            handle = self._segment_for(len(line))
            try:
                handle.write(line)
                handle.flush()
            except OSError as exc:
                path = self.segments[-1]
                self._abandon_segment()
                raise StoreError(f"writing segment {path} failed: {exc}") from exc
            self._size += len(line)
            self.written += 1

    def close(self) -> None:
        """Flush and close the current segment; later writes raise StoreError."""
        with self._lock:
            self._closed = True
            self._close_segment()

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
