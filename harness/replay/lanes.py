"""Scheduling shared by the replay and the shadow worker: requests of one session keep their
order, sessions run in parallel.

Inside a session, a run of safe requests (GET/HEAD/OPTIONS) between two writes is sent
concurrently; a write waits for everything before it and holds back everything after it, so
create → get → update → delete and start → poll → results stay in order (and the correlation
learned from a create is there for the get). Memory is bounded: each lane's queue is bounded, the
source waits when one is full, and idle lanes are closed.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from harness.model import SAFE_METHODS

ANONYMOUS = "anonymous"
IDLE_LANE_S = 30.0

T = TypeVar("T")  # an item: a recorded exchange (replay) or a captured one (shadow worker)


def session_key(record: dict[str, Any]) -> str:
    """The session of a recorded exchange (a dict): its credential fingerprint, else anonymous."""
    if record.get("session"):
        return str(record["session"])
    for name, value in record["request"].get("headers", []):
        if name.lower() in ("authorization", "cookie", "x-api-key"):
            return str(value)
    return ANONYMOUS


def record_is_safe(record: dict[str, Any]) -> bool:
    """Whether a recorded exchange's request is a safe method."""
    return record["request"]["method"].upper() in SAFE_METHODS


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether session `key` belongs to shard K of N (1-based), stable across runs and machines."""
    if shard is None:
        return True
    k, n = shard
    return zlib.crc32(key.encode()) % n == k - 1


class _Lane(Generic[T]):
    def __init__(self, handler: Callable[[T], Awaitable[None]], limit: asyncio.Semaphore,
                 room: asyncio.Semaphore, depth: int, is_safe: Callable[[T], bool]) -> None:
        self.queue: asyncio.Queue[T | None] = asyncio.Queue(maxsize=depth)
        self.closed = False
        self._handler = handler
        self._limit = limit
        self._room = room
        self._is_safe = is_safe
        self.task = asyncio.create_task(self._run())

    async def _next(self, pending: set[asyncio.Task[None]]) -> T | None:
        while True:
            try:
                return await asyncio.wait_for(self.queue.get(), IDLE_LANE_S)
            except TimeoutError:
                if self.queue.empty() and not pending:
                    self.closed = True  # no await since the check: nothing can slip in
                    return None

    async def _run(self) -> None:
        pending: set[asyncio.Task[None]] = set()
        try:
            while (item := await self._next(pending)) is not None:
                if self._is_safe(item):
                    await self._limit.acquire()
                    task = asyncio.create_task(self._guarded(item))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                else:
                    if pending:
                        await asyncio.gather(*pending)
                    await self._limit.acquire()
                    await self._guarded(item)
            self.closed = True
            if pending:
                await asyncio.gather(*pending)
        except BaseException:  # cancelled: what this lane started ends with it
            self.closed = True
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise

    async def _guarded(self, item: T) -> None:
        try:
            await self._handler(item)
        finally:
            self._limit.release()
            self._room.release()


async def _aiter(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
        return
    for count, item in enumerate(items):
        yield item
        if count % 64 == 0:
            await asyncio.sleep(0)  # let lanes run while a file is streamed


async def run_lanes(
    items: Iterable[T] | AsyncIterable[T],
    handler: Callable[[T], Awaitable[None]],
    *,
    key: Callable[[T], str],
    is_safe: Callable[[T], bool],
    concurrency: int = 32,
    depth: int = 256,
    shard: tuple[int, int] | None = None,
) -> int:
    """Feed `items` to `handler` with per-session ordering (`key(item)`: its session;
    `is_safe(item)`: whether it may run beside the safe items next to it); returns how many were
    scheduled. The handler must not raise."""
    limit = asyncio.Semaphore(concurrency)
    # Items read but not yet handled, across all lanes: what bounds memory, whatever the
    # number of sessions.
    room = asyncio.Semaphore(max(concurrency * 8, depth))
    lanes: dict[str, _Lane[T]] = {}
    running: set[asyncio.Task[None]] = set()  # every lane task not finished, closed or not
    scheduled = 0
    try:
        async for item in _aiter(items):
            lane_key = key(item)
            if not in_shard(lane_key, shard):
                continue
            lane = lanes.get(lane_key)
            if lane is None or lane.closed:
                lane = lanes[lane_key] = _Lane(handler, limit, room, depth, is_safe)
                running.add(lane.task)
                lane.task.add_done_callback(running.discard)
            await room.acquire()
            await lane.queue.put(item)
            scheduled += 1
            if scheduled % 1024 == 0:
                lanes = {k: v for k, v in lanes.items() if not v.closed}
        for lane in lanes.values():
            if not lane.closed:
                await lane.queue.put(None)
        await asyncio.gather(*(lane.task for lane in lanes.values()))
    except BaseException:
        # Cancelled (a worker told to stop) or the source failed: no lane may go on handling
        # items after this returns (with the clients it uses already closed).
        tasks = list(running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return scheduled
