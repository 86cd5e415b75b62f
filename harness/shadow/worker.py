"""The mirror worker: a separate process (``python -m harness.shadow.worker``, started by the
shadow addon) that reads captured exchanges from its pipe, sends each to the candidate and the
secondary, judges and records it. Nothing here runs in the proxy's event loop, so nothing the
candidate does (slow, hanging, refusing, failing) can delay or fail a production answer.

Bounded everywhere: at most `queue_size` exchanges (and `MAX_HELD_BYTES`) are held; beyond that
the worker stops reading, its pipe fills and the proxy drops (and counts) further mirrors. At
most `max_inflight` exchanges are being mirrored at once, each within its timeout. Requests of one
client keep their order around writes (create → get, login → authorised calls), so the
identifiers learned from a write are there for the requests after it. An answer the candidate
has not finished (a backtest still running) is asked again beside the lane, never in it: the
client's later requests do not wait for it (at most `max_inflight` settle at once).

The worker ends when its pipe ends (the proxy closed it, or died) after finishing what it holds;
on SIGTERM it abandons what is still queued, flushes the recordings and exits. Every exchange it
was handed gets exactly one outcome in its counts (see `counters.WorkerTally`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pickle
import select
import signal
import sys
from collections import Counter, deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import orjson

from harness.loop import run_async
from harness.mirror.correlation import Correlator
from harness.mirror.policy import Breakers, MirrorPolicy
from harness.model import SAFE_METHODS, Exchange
from harness.shadow import counters as c
from harness.shadow.capture import Captured, to_exchange
from harness.shadow.channel import FrameReader
from harness.shadow.pool import leave_idle_class
from harness.shadow.settings import WorkerSettings

if TYPE_CHECKING:  # imported where used: a worker process loads only what its settings need
    from harness.judge.engine import Engine
    from harness.metrics.worker import WorkerMetrics
    from harness.mirror.step import Mirror
    from harness.mirror.transport import Client
    from harness.routes import Route
    from harness.store.writer import SegmentWriter

log = logging.getLogger("parity.shadow")

MAX_HELD_BYTES = 256 * 1024 * 1024
STATS_EVERY_S = 1.0
JUDGED_PER_LINE = 8  # judged exchanges per line to the proxy (cutover)
READ_CHUNK = 1 << 18


# An exchange, the bytes it held in the intake, and who answered the client (a cutover moves
# some to the candidate: "candidate"; else "primary").
Item = tuple[Exchange, int, str]


class Intake:
    """Frames from the proxy's pipe as an async iterator of captured tuples (with their size).

    Reading stops while `max_items` or `max_bytes` are held (read and not yet released), so the
    pipe fills up and the proxy drops instead of this process growing."""

    def __init__(self, fd: int, max_items: int, max_bytes: int = MAX_HELD_BYTES,
                 on_eof: Callable[[], None] | None = None) -> None:
        os.set_blocking(fd, False)
        self._on_eof = on_eof
        self.fd = fd
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.held = 0
        self.held_bytes = 0
        self.undecodable = 0
        self._frames = FrameReader()
        self._ready: deque[tuple[Captured, int]] = deque()
        self._arrived = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._eof = False

    def start(self) -> None:
        """Start reading (in the running event loop)."""
        self._loop = asyncio.get_running_loop()
        self._resume()

    def _resume(self) -> None:
        if not self._reading and not self._eof and self._loop is not None:
            self._loop.add_reader(self.fd, self._readable)
            self._reading = True

    def _pause(self) -> None:
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self.fd)
            self._reading = False

    def _full(self) -> bool:
        return self.held >= self.max_items or self.held_bytes >= self.max_bytes

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._eof = True
            self._pause()
            self._arrived.set()
            if self._on_eof is not None:
                self._on_eof()
        self._frames.push(data)
        self._admit()

    def _admit(self) -> None:
        """Take complete frames while there is room; stop reading the pipe when there is none."""
        admitted = False
        while not self._full():
            payload = self._frames.pop()
            if payload is None:
                break
            try:
                captured = pickle.loads(payload)  # our own pipe from our own proxy process
            except Exception:
                self.undecodable += 1
                continue
            self._ready.append((captured, len(payload)))
            self.held += 1
            self.held_bytes += len(payload)
            admitted = True
        if admitted or self._eof:
            self._arrived.set()
        if self._full():
            self._pause()
        else:
            self._resume()

    def poll(self) -> None:
        """Read what the pipe holds now, if there is room. Called between exchanges: on a busy
        machine one turn of the event loop can take longer than the pipe takes to fill (many
        mirrors judged in a row), and the proxy would drop what it could not write."""
        if self._reading:
            self._readable()

    def release(self, size: int) -> None:
        """One item is finished: make room for more."""
        self.held -= 1
        self.held_bytes -= size
        self._admit()

    async def __aiter__(self) -> AsyncIterator[tuple[Captured, int]]:
        while True:
            while self._ready:
                yield self._ready.popleft()
            if self._eof and not self._full():  # not full: every complete frame was admitted
                return
            self._arrived.clear()
            await self._arrived.wait()

    def abandon(self) -> int:
        """Stop reading and count what will not be mirrored: exchanges held and not finished,
        plus every whole frame still in the buffer or the pipe (read out, not decoded)."""
        self._pause()
        self._eof = True
        while True:
            try:
                data = os.read(self.fd, READ_CHUNK)
            except OSError:  # BlockingIOError: the pipe is empty
                break
            if not data:
                break
            self._frames.push(data)
        frames = 0
        while self._frames.pop() is not None:
            frames += 1
        return self.held + frames

    def close(self) -> None:
        self._pause()
        self._eof = True  # a later `release` must not watch the closed descriptor again
        with contextlib.suppress(OSError):
            os.close(self.fd)


class MirrorWorker:
    """Mirrors, judges and records exchanges; counts what happened to them."""

    def __init__(self, settings: WorkerSettings, *, engine: Engine | None = None,
                 writer: SegmentWriter | None = None, policy: MirrorPolicy | None = None) -> None:
        if engine is None:
            from harness.config import load_config
            from harness.judge.engine import Engine

            engine = Engine(load_config(settings.config_path))
        if writer is None:
            from harness.store.writer import SegmentWriter

            writer = SegmentWriter(settings.recordings, prefix=f"shadow-{settings.name}")
        self.settings = settings
        self.engine = engine
        self.writer = writer
        self.policy = policy or MirrorPolicy(Breakers(settings.breakers))
        self.correlators = {"candidate": Correlator(), "secondary": Correlator()}
        self.tally = c.WorkerTally()
        self.counts: Counter[str] = self.tally.counts
        self._settling: set[asyncio.Task[None]] = set()
        self._settle_slots = asyncio.Semaphore(settings.max_inflight)
        self.recording_failed: str | None = None
        self._mirror: Mirror  # set by attach()
        self._release: Callable[[int], None] = lambda size: None
        self.metrics: WorkerMetrics | None = None  # with --metrics
        if settings.metrics_dir:
            from harness.metrics.worker import WorkerMetrics

            self.metrics = WorkerMetrics(settings.metrics_dir,
                                         (route.name for route in self.engine.config.routes))
        self._poll: Callable[[], None] = lambda: None
        self._reverse: Any = None  # the mirror to the primary of moved exchanges (cutover)
        self._judged: list[list[Any]] = []  # judged lines not yet sent to the proxy
        self.send_judged: Callable[[list[list[Any]]], None] | None = None

    async def run(self, items: AsyncIterable[tuple[Captured, int]],
                  release: Callable[[int], None] | None = None, *, client: Client | None = None,
                  poll: Callable[[], None] | None = None) -> None:
        """Mirror every captured item until `items` ends; `release(size)` is called as each one
        is finished, `poll()` between the CPU-heavy steps (to read the pipe). `client` is made
        from the settings when None."""
        from harness.replay.lanes import run_lanes

        self._release = release or self._release
        self._poll = poll or self._poll
        async with contextlib.AsyncExitStack() as stack:
            if client is None:
                client = await stack.enter_async_context(self._client())
            self.attach(client)
            s = self.settings
            try:
                await run_lanes(self._exchanges(items), self._handle,
                                key=lambda item: item[0].session or "anonymous",
                                is_safe=lambda item: item[0].request.method.upper()
                                in SAFE_METHODS,
                                concurrency=s.max_inflight, depth=s.queue_size)
                while self._settling:  # the pipe ended: let the settling answers finish
                    await asyncio.gather(*list(self._settling))
            except BaseException:  # cancelled: nothing settles after the client is closed
                for task in self._settling:
                    task.cancel()
                await asyncio.gather(*self._settling, return_exceptions=True)
                raise

    def attach(self, client: Client) -> None:
        """Send the mirrors with `client`."""
        from harness.mirror.step import Mirror

        s = self.settings
        self._mirror = Mirror(client, self.engine, self.policy, s.candidate, s.secondary,
                              s.timeout_s, correlators=self.correlators)
        if s.primary:
            from harness.cutover.reverse import reverse_mirror

            self._reverse = reverse_mirror(client, self.engine, self.policy.breakers, s.primary,
                                           s.secondary, s.timeout_s)

    def _client(self) -> Client:
        from harness.mirror.transport import TransportSettings, make_client

        s = self.settings
        # Candidate and secondary are asked at once: two connections per mirror in flight.
        return make_client(TransportSettings(
            timeout_s=s.timeout_s, max_connections=s.max_inflight * (2 if s.secondary else 1),
            verify=s.verify, ca_bundle=s.ca_bundle))

    async def _exchanges(self, items: AsyncIterable[tuple[Captured, int]]
                         ) -> AsyncIterator[Item]:
        async for captured, size in items:
            served = "primary"
            try:
                if len(captured) == 12:  # moved by the cutover: who served it comes last
                    served, captured = captured[11], captured[:11]
                exchange = to_exchange(captured)
            except Exception:
                log.exception("a captured exchange could not be read")
                self.tally.failed()
                self._release(size)
                continue
            yield exchange, size, served

    def _deadline(self) -> float:
        # The transport's timeout bounds one request (candidate and secondary are asked at
        # once); this bounds the whole mirror.
        return 2 * self.settings.timeout_s + 1.0

    async def _handle(self, item: Item) -> None:
        exchange, size, served = item
        held = False  # still held by this worker after return (settling, or cancelled)
        try:
            if served == "candidate" and self._reverse is not None:
                await self._mirror_moved(exchange)
                self._finish(exchange, served)
                return
            route = await self._mirror_first(exchange)
            self._poll()
            if self._mirror.unfinished(route, exchange):
                await self._settle_slots.acquire()
                task = asyncio.create_task(self._settle_beside(exchange, route, size))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)
                held = True
                return
            self._finish(exchange)
        except asyncio.CancelledError:
            held = True  # told to stop: the intake counts it as abandoned
            raise
        except Exception:  # one bad exchange must not stop the worker
            log.exception("mirroring %s %s failed", exchange.request.method,
                          exchange.request.path)
            self.tally.failed()
        finally:
            if not held:
                self._release(size)

    async def _settle_beside(self, exchange: Exchange, route: Route, size: int) -> None:
        """Ask an unfinished answer again, off the lane; then judge, record and count it."""
        cancelled = False
        try:
            await self._settle(exchange, route)
            self._finish(exchange)
        except asyncio.CancelledError:
            cancelled = True  # told to stop: the intake counts it as abandoned
            raise
        except Exception:
            log.exception("settling %s %s failed", exchange.request.method,
                          exchange.request.path)
            self.tally.failed()
        finally:
            self._settle_slots.release()
            if not cancelled:
                self._release(size)

    async def _mirror_first(self, exchange: Exchange) -> Route:
        """Send `exchange` once and judge it (within the whole mirror's deadline); returns its
        route."""
        route = self.engine.route_of(exchange)
        await self._mirror.run(exchange, route, settle=False, deadline_s=self._deadline())
        return route

    async def _mirror_moved(self, exchange: Exchange) -> None:
        """A moved exchange: mirrored to the primary (safety reversed), judged docker vs
        native (see harness.cutover.reverse)."""
        from harness.cutover.reverse import mirror_moved

        route = self.engine.route_of(exchange)
        await mirror_moved(self._reverse, self.engine, exchange, route, self._deadline())

    async def _settle(self, exchange: Exchange, route: Route) -> None:
        # A request cut off by the bound keeps the last answer judged.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(route.settle_s + self._deadline()):
                await self._mirror.settle(exchange, route)

    def _count(self, exchange: Exchange, *, recorded: bool) -> None:
        self.tally.finished(exchange, recorded=recorded)
        if self.metrics is not None:
            self.metrics.judged(exchange)

    def _finish(self, exchange: Exchange, served: str = "primary") -> None:
        self._count(exchange, recorded=self._record(exchange))
        if self.send_judged is not None:
            self._report_judged(exchange, served)
        self._poll()

    def _report_judged(self, exchange: Exchange, served: str) -> None:
        """Queue the judged line for the proxy's rollback judge; sent once this turn of the
        event loop is over (one write for the exchanges finished together)."""
        from harness.cutover.judge import exchange_judged

        if not self._judged:
            asyncio.get_running_loop().call_soon(self._flush_judged)
        self._judged.append(exchange_judged(exchange, served).to_wire())

    def _flush_judged(self) -> None:
        judged, self._judged = self._judged, []
        if judged and self.send_judged is not None:
            self.send_judged(judged)

    async def mirror_one(self, exchange: Exchange) -> Exchange:
        """Mirror and judge one exchange (its primary answer known), settling an unfinished
        answer in line; counts it as compared or skipped (nothing is recorded)."""
        route = await self._mirror_first(exchange)
        if self._mirror.unfinished(route, exchange):
            await self._settle(exchange, route)
        self._count(exchange, recorded=True)
        return exchange

    def _record(self, exchange: Exchange) -> bool:
        """Write `exchange`; False when it is not recorded (recording stopped)."""
        if self.recording_failed:
            return False
        try:
            self.writer.write(exchange)
        except Exception as exc:  # StoreError (disk full...) or a bug: stop recording loudly
            self.recording_failed = str(exc)
            log.critical("RECORDING STOPPED: %s. Mirroring goes on unrecorded; production is not "
                         "affected. Free space on the recordings volume and restart.", exc)
            if self.metrics is not None:
                self.metrics.recording_failed()
            return False
        return True

    def report(self) -> dict[str, Any]:
        """The worker's cumulative counts and open breakers, as sent to the proxy."""
        counts = dict(self.counts)
        counts[c.RETRIES_NOT_RESENT] = self.policy.duplicates
        counts[c.BREAKERS] = self.policy.trips
        return {"worker": self.settings.name, "counts": counts, "breakers": self.policy.tripped}

    def close(self) -> None:
        """Flush and close the recordings."""
        with contextlib.suppress(Exception):
            self.writer.close()


class StatsSender:
    """Sends the worker's report to the proxy as JSON lines, never blocking."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd

    def send(self, report: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # full (the proxy reads later) or gone (it ended)
            os.write(self.fd, orjson.dumps(report) + b"\n")

    def send_judged(self, judged: list[list[Any]]) -> None:
        """Judged exchanges for the cutover's rollback judge, in lines short enough to be
        written whole (PIPE_BUF) beside the counts."""
        for start in range(0, len(judged), JUDGED_PER_LINE):
            line = orjson.dumps({"judged": judged[start:start + JUDGED_PER_LINE]}) + b"\n"
            if len(line) > select.PIPE_BUF:
                line = orjson.dumps({"judged": [_shorter(item) for item in
                                                judged[start:start + JUDGED_PER_LINE]]}) + b"\n"
            with contextlib.suppress(OSError):
                os.write(self.fd, line)

    async def every(self, seconds: float, report: Callable[[], dict[str, Any]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.send(report())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _shorter(item: list[Any]) -> list[Any]:
    """A judged line with its texts cut, so that a batch fits one pipe write."""
    return [value[:60] if isinstance(value, str) else value for value in item]


async def serve(settings: WorkerSettings, fd: int, stats_fd: int) -> None:
    """Run one worker on its pipe until the pipe ends (or SIGTERM)."""
    loop = asyncio.get_running_loop()
    stats = StatsSender(stats_fd)
    intake = Intake(fd, settings.queue_size, on_eof=leave_idle_class)
    worker = MirrorWorker(settings)
    if settings.cutover:
        worker.send_judged = stats.send_judged
    intake.start()
    main = asyncio.current_task()
    assert main is not None
    loop.add_signal_handler(signal.SIGTERM, main.cancel)
    reporter = loop.create_task(stats.every(STATS_EVERY_S, worker.report))
    sampler = worker.metrics and loop.create_task(worker.metrics.sample_every(
        STATS_EVERY_S, lambda: intake.held, lambda: getattr(worker.writer, "segments", ())))
    try:
        await worker.run(intake, intake.release, poll=intake.poll)
    except asyncio.CancelledError:
        abandoned = intake.abandon()
        worker.tally.abandoned(abandoned)
        log.warning("stopped: %d queued exchange(s) abandoned", abandoned)
    finally:
        reporter.cancel()
        if sampler:
            sampler.cancel()
        worker.tally.failed(intake.undecodable)
        worker.close()
        intake.close()
        stats.send(worker.report())
        stats.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker process (started by the shadow addon, not by hand)."""
    parser = argparse.ArgumentParser(prog="python -m harness.shadow.worker")
    parser.add_argument("--settings", required=True, help="WorkerSettings as JSON")
    parser.add_argument("--fd", type=int, required=True, help="pipe to read exchanges from")
    parser.add_argument("--stats-fd", type=int, required=True, help="pipe to report counts on")
    args = parser.parse_args(argv)
    settings = WorkerSettings.from_json(args.settings)
    # The proxy decides when a worker stops (by closing its pipe); a Ctrl-C meant for the proxy
    # must not cut the worker off before it has drained.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(settings.worker_nice)
    if settings.worker_idle and hasattr(os, "SCHED_IDLE"):
        # Measured: with niceness alone a slow candidate still cost the proxy's p99 about 6 %
        # on a 2-core machine; under SCHED_IDLE the difference is within noise.
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"parity shadow {settings.name}: %(levelname)s %(message)s")
    run_async(serve(settings, args.fd, args.stats_fd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
