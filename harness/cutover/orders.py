"""Where each order went first, on disk before it goes anywhere.

The cutover pins an unsafe request with an idempotency identifier to the side that got its first
attempt (`harness.cutover.control`). The pins must outlive the proxy: after a rollback and a
restart, a retry of an order the candidate executed would otherwise follow the share to the
primary and execute twice.

The journal is an append-only JSON-lines file beside the cutover state (`journal_path`); each pin
is written and fsynced before its request is forwarded, and a torn last line (a crash while
writing) is skipped when it is read back: that request was never forwarded. It is rewritten with
the newest `limit` pins when it holds twice as many lines.

Attempts of one order are serialized while one is in flight to the candidate or its pin is being
written (`side` waits): a duplicate sent at the same moment follows the first attempt's outcome,
never a side of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from harness.files import write_atomically

log = logging.getLogger("parity.cutover")

SIDES = ("primary", "candidate")


def journal_path(state_path: Path) -> Path:
    """The pin journal of the cutover state at `state_path` (one journal per state file)."""
    return state_path.with_name(state_path.stem + ".orders.jsonl")


class OrderPins:
    """The side each order is pinned to, kept in a journal (see the module). OSError from the
    constructor when the journal cannot be opened."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self._sides: OrderedDict[str, str] = OrderedDict()
        self._busy: dict[str, asyncio.Event] = {}
        self._file_lock = threading.Lock()  # the journal is written from worker threads
        self._lines = self._load()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")  # noqa: SIM115 (open for the proxy's life; `close`)

    def _load(self) -> int:
        """Read the journal's pins; returns its line count (0 when there is no journal)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        lines = raw.splitlines()
        skipped = 0
        for line in lines:
            try:
                entry = orjson.loads(line)
                order, side = entry["order"], entry["side"]
            except (orjson.JSONDecodeError, TypeError, KeyError):
                skipped += 1
                continue
            if isinstance(order, str) and side in SIDES:
                self._note(order, side)
            else:
                skipped += 1
        if skipped:
            log.warning("cutover: %d unreadable line(s) in %s skipped (a write cut short by a "
                        "crash: its request was never forwarded)", skipped, self.path)
        return len(lines)

    def __len__(self) -> int:
        return len(self._sides)

    def _note(self, order: str, side: str) -> None:
        self._sides[order] = side
        self._sides.move_to_end(order)
        if len(self._sides) > self.limit:
            self._sides.popitem(last=False)

    async def side(self, order: str) -> str | None:
        """The side `order` is pinned to (None: not pinned), once no attempt of it is in flight
        and its pin is on disk."""
        while (busy := self._busy.get(order)) is not None:
            await busy.wait()
        return self._sides.get(order)

    @contextlib.asynccontextmanager
    async def attempt(self, order: str, side: str) -> AsyncIterator[None]:
        """Pin `order` to `side` on disk, then run the body (the request is forwarded there):
        other attempts of `order` wait in `side` until the body is done. OSError when the pin
        cannot be written: then nothing is pinned and the body does not run. Called right after
        `side` said None, with no await between (so no other attempt is in flight)."""
        busy = self._busy[order] = asyncio.Event()
        try:
            await self.move(order, side)
            yield
        finally:
            del self._busy[order]
            busy.set()

    async def move(self, order: str, side: str) -> None:
        """Pin `order` to `side` on disk (inside `attempt`: a request that was not sent where it
        was first pinned, sent elsewhere). OSError when it cannot be written; the pin is then as
        it was."""
        previous = self._sides.get(order)
        self._note(order, side)
        line = orjson.dumps({"order": order, "side": side}) + b"\n"
        compact = self._lines + 1 >= 2 * self.limit
        snapshot = b"".join(orjson.dumps({"order": o, "side": s}) + b"\n"
                            for o, s in self._sides.items()) if compact else None
        try:
            await asyncio.to_thread(self._write, line, snapshot)
        except OSError:
            if previous is None:
                self._sides.pop(order, None)
            else:
                self._note(order, previous)
            raise

    def _write(self, line: bytes, snapshot: bytes | None) -> None:
        """Append `line` and fsync; with a `snapshot`, rewrite the journal as it instead."""
        with self._file_lock:
            if snapshot is None:
                self._file.write(line)
                self._file.flush()
                os.fsync(self._file.fileno())
                self._lines += 1
                return
            write_atomically(self.path, snapshot, durable=True)
            self._file.close()
            self._file = open(self.path, "ab")  # noqa: SIM115
            self._lines = snapshot.count(b"\n")

    def close(self) -> None:
        """Close the journal (every pin is already on disk)."""
        with self._file_lock:
            self._file.close()
