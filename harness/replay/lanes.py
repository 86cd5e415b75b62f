"""Replay scheduling: requests of one session keep their recorded order, sessions run in parallel.

Inside a session, a run of safe requests (GET/HEAD/OPTIONS) between two writes is sent
concurrently; a write waits for everything before it and holds back everything after it, so
create → get → update → delete and start → poll → results stay in order. Memory is bounded: each
lane's queue is bounded and reading the recording waits when they are full.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from harness.policy import SAFE_METHODS

Record = dict[str, Any]
Handler = Callable[[Record], Awaitable[None]]

ANONYMOUS = "anonymous"


def session_key(record: Record) -> str:
    """The session a recorded exchange belongs to: its credential fingerprint, else anonymous."""
    if record.get("session"):
        return str(record["session"])
    for name, value in record["request"].get("headers", []):
        if name.lower() in ("authorization", "cookie", "x-api-key"):
            return value
    return ANONYMOUS


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether session `key` belongs to shard K of N (1-based), stable across runs and machines."""
    if shard is None:
        return True
    k, n = shard
    return zlib.crc32(key.encode()) % n == k - 1


class _Lane:
    def __init__(self, handler: Handler, limit: asyncio.Semaphore, depth: int) -> None:
        self.queue: asyncio.Queue[Record | None] = asyncio.Queue(maxsize=depth)
        self._handler = handler
        self._limit = limit
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        pending: set[asyncio.Task[None]] = set()
        while (record := await self.queue.get()) is not None:
            if record["request"]["method"].upper() in SAFE_METHODS:
                await self._limit.acquire()
                task = asyncio.create_task(self._guarded(record))
                pending.add(task)
                task.add_done_callback(pending.discard)
            else:
                if pending:
                    await asyncio.gather(*pending)
                await self._limit.acquire()
                await self._guarded(record)
        if pending:
            await asyncio.gather(*pending)

    async def _guarded(self, record: Record) -> None:
        try:
            await self._handler(record)
        finally:
            self._limit.release()


async def run_lanes(
    records: Iterable[Record],
    handler: Handler,
    *,
    concurrency: int = 32,
    depth: int = 256,
    shard: tuple[int, int] | None = None,
) -> int:
    """Feed `records` to `handler` with per-session ordering; returns how many were scheduled."""
    limit = asyncio.Semaphore(concurrency)
    lanes: dict[str, _Lane] = {}
    scheduled = 0
    for record in records:
        key = session_key(record)
        if not in_shard(key, shard):
            continue
        lane = lanes.get(key)
        if lane is None:
            lane = lanes[key] = _Lane(handler, limit, depth)
        await lane.queue.put(record)
        scheduled += 1
        if scheduled % 64 == 0:
            await asyncio.sleep(0)  # let lanes run while the reader streams
    for lane in lanes.values():
        await lane.queue.put(None)
    await asyncio.gather(*(lane.task for lane in lanes.values()))
    return scheduled
