"""The mirror worker: a separate process that takes captured exchanges off a bounded queue, sends
them to the candidate (and secondary), judges and records them. Nothing here runs in the proxy's
event loop, so nothing the candidate does can slow production down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue as queue_module
import signal
import threading
import time
from dataclasses import dataclass, field

from harness.compare.engine import Engine
from harness.config import load_config
from harness.mirror import Mirror
from harness.model import Exchange, Request, Response, Severity
from harness.policy import SAFE_METHODS, MirrorPolicy
from harness.replay.lanes import run_lanes
from harness.store.bodies import body_from_wire
from harness.store.writer import SegmentWriter, StoreError
from harness.transport import TransportSettings, make_client

log = logging.getLogger("parity.shadow")

STATS_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What a worker needs; plain values, so it pickles into the worker process."""

    candidate: str
    secondary: str | None
    config_path: str | None
    recordings: str
    timeout_s: float
    concurrency: int = 64
    verify: bool = True
    ca_bundle: str | None = None
    name: str = "w1"


@dataclass(slots=True)
class Captured:
    """What the addon captures of one flow (plain data: cheap to pickle)."""

    session: str
    method: str
    path: str
    query: list[tuple[str, str]]
    request_headers: list[tuple[str, str]]
    request_body: bytes
    status: int
    response_headers: list[tuple[str, str]]
    response_body: bytes
    latency_ms: float
    ts: float = field(default_factory=time.time)

    def to_exchange(self) -> Exchange:
        """The exchange with the primary's answer, bodies decoded from their Content-Encoding."""
        def encoding(headers: list[tuple[str, str]]) -> str | None:
            return next((v for k, v in headers if k.lower() == "content-encoding"), None)

        return Exchange(
            request=Request(self.method, self.path, self.query, self.request_headers,
                            body_from_wire(self.request_body, encoding(self.request_headers))),
            primary=Response(self.status, self.response_headers,
                             body_from_wire(self.response_body, encoding(self.response_headers)),
                             self.latency_ms),
            ts=self.ts,
            session=self.session,
        )


class MirrorWorker:
    """Mirrors, judges and records; reports counts on `stats_queue`."""

    def __init__(self, settings: WorkerSettings, stats_queue) -> None:
        self.settings = settings
        self.engine = Engine(load_config(settings.config_path))
        self.writer = SegmentWriter(settings.recordings, prefix=f"shadow-{settings.name}")
        self.transport = TransportSettings(timeout_s=settings.timeout_s,
                                           max_connections=settings.concurrency,
                                           verify=settings.verify, ca_bundle=settings.ca_bundle)
        self.stats_queue = stats_queue
        self.counts: dict[str, int] = {}
        self.recording_failed: str | None = None
        self._mirror: Mirror | None = None

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    async def run(self, items) -> None:
        """Process items (an async iterable of Captured) until it ends."""
        async with make_client(self.transport) as client:
            self._mirror = Mirror(client, self.engine, MirrorPolicy(), self.settings.candidate,
                                  self.settings.secondary, self.settings.timeout_s)
            reporter = asyncio.create_task(self._report_loop())
            await run_lanes(items, self._handle, key=lambda c: c.session,
                            is_safe=lambda c: c.method.upper() in SAFE_METHODS,
                            concurrency=self.settings.concurrency, depth=1024)
            reporter.cancel()
        self.writer.close()
        self._report()

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            self._report()

    def _report(self) -> None:
        with contextlib.suppress(queue_module.Full):
            self.stats_queue.put_nowait((self.settings.name, dict(self.counts)))

    async def _handle(self, captured: Captured) -> None:
        try:
            exchange = captured.to_exchange()
            await self._mirror.run(exchange, self.engine.route_of(exchange))
            self.count(str(exchange.verdict))
            if any(d.severity is Severity.CRITICAL and "dry run" in d.message
                   for d in exchange.differences):
                self.count("breaker-tripped")
            self._record(exchange)
        except Exception:  # one bad exchange must not stop the worker
            log.exception("mirroring %s %s failed", captured.method, captured.path)
            self.count("worker-errors")

    def _record(self, exchange: Exchange) -> None:
        if self.recording_failed:
            self.count("not-recorded")
            return
        try:
            self.writer.write(exchange)
        except StoreError as exc:
            self.recording_failed = str(exc)
            log.critical("RECORDING STOPPED: %s. Mirroring goes on unrecorded; production is "
                         "not affected. Free space on the recordings volume and restart.", exc)
            self.count("not-recorded")


async def _items_from(mp_queue):
    """The queue's items as an async iterator, read by a thread (the queue blocks). Ends at the
    None sentinel, or when the proxy process is gone (then nothing more can arrive)."""
    loop = asyncio.get_running_loop()
    local: asyncio.Queue = asyncio.Queue(maxsize=1024)
    parent = os.getppid()

    def pump() -> None:
        item = None
        while True:
            try:
                item = mp_queue.get(timeout=1.0)
            except queue_module.Empty:
                if os.getppid() != parent:
                    item = None
                else:
                    continue
            except (EOFError, OSError):
                item = None
            asyncio.run_coroutine_threadsafe(local.put(item), loop).result()
            if item is None:
                return

    threading.Thread(target=pump, daemon=True, name="parity-queue-reader").start()
    while (item := await local.get()) is not None:
        yield item


def worker_main(settings: WorkerSettings, mp_queue, stats_queue) -> None:
    """Entry point of a worker process: runs until it reads the None sentinel."""
    # The proxy decides when workers stop (after they drained the queue), even when its whole
    # process group is signalled.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    logging.basicConfig(level=logging.INFO, format=f"parity-{settings.name}: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    worker = MirrorWorker(settings, stats_queue)
    asyncio.run(worker.run(_items_from(mp_queue)))


