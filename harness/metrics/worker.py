"""The metrics a mirror worker process writes: one call per judged exchange (`judged`) and a
periodic `sample` of its queue depth and recorded bytes. They go to prometheus_client's
multiprocess files in the directory the proxy gave the worker, where the proxy's `/metrics`
reads them; nothing here runs in the proxy."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from harness import metrics as m
from harness.model import Exchange, Severity

if TYPE_CHECKING:  # prometheus_client is imported once the multiprocess directory is set
    from prometheus_client import Counter

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OTHER = "other"  # the route label of requests no route of the table names
SIDES = ("primary", "candidate")
ERROR_REASONS = ("no-answer", "server-error")


class WorkerMetrics:
    """A worker's metrics in multiprocess mode; `directory` is the proxy's metrics directory.
    `routes` are the route names of the table: any other route is labelled `other`, so a
    client inventing paths cannot grow the label set."""

    def __init__(self, directory: str, routes: Iterable[str]) -> None:
        # prometheus_client picks its value class when first imported: the directory has to be
        # in the environment before that.
        os.environ[MULTIPROC_ENV] = directory
        from prometheus_client import Counter, Gauge, Histogram

        def counter(spec: m.MetricSpec) -> Counter:
            return Counter(spec.base, spec.help, spec.labels, registry=None)

        self._routes = frozenset(routes)
        self.exchanges = counter(m.EXCHANGES)
        self.critical = counter(m.CRITICAL)
        self.errors = counter(m.ERRORS)
        self.recorded_bytes = counter(m.RECORDED_BYTES)
        self.latency = Histogram(m.LATENCY.base, m.LATENCY.help, m.LATENCY.labels,
                                 buckets=m.LATENCY_BUCKETS, registry=None)
        self.queue_depth = Gauge(m.QUEUE_DEPTH.base, m.QUEUE_DEPTH.help, registry=None,
                                 multiprocess_mode="livesum")
        self.recording_stopped = Gauge(m.RECORDING_STOPPED.base, m.RECORDING_STOPPED.help,
                                       registry=None, multiprocess_mode="livemax")
        self.recording_stopped.set(0)
        self.queue_depth.set(0)
        self._sides: dict[str, tuple[tuple[Any, dict[str, Any]], ...]] = {}  # group → children
        self._first_open = 0  # the first recording segment that may still grow
        self._open_bytes = 0  # bytes of it already counted

    def judged(self, exchange: Exchange) -> None:
        """Count one judged exchange: its verdict, critical findings, both sides' answer times
        and errors (these only when it was sent to the candidate)."""
        group = exchange.group or OTHER
        route = exchange.route if exchange.route in self._routes else OTHER
        self.exchanges.labels(group, route, str(exchange.verdict)).inc()
        critical = sum(1 for d in exchange.differences
                       if d.severity == Severity.CRITICAL and not d.noise)
        if critical:
            self.critical.labels(group).inc(critical)
        if exchange.mirror.startswith("skipped"):
            return
        sides = self._sides.get(group)
        if sides is None:  # error series made at once, at 0: an error ratio of 0, not absent
            sides = self._sides[group] = tuple(
                (self.latency.labels(group, side),
                 {reason: self.errors.labels(group, side, reason) for reason in ERROR_REASONS})
                for side in SIDES)
        for (latency, errors), response in zip(sides, (exchange.primary, exchange.candidate),
                                               strict=True):
            if response is None or response.error:
                errors["no-answer"].inc()
                continue
            if response.status >= 500:
                errors["server-error"].inc()
            if response.latency_ms is not None:
                latency.observe(response.latency_ms / 1000)

    def recording_failed(self) -> None:
        """Recording stopped in this worker (it stays stopped until the worker restarts)."""
        self.recording_stopped.set(1)

    def sample(self, held: int, segments: Sequence[str | os.PathLike[str]]) -> None:
        """The worker's queue depth now, and the bytes its recording `segments` (in the order
        they were opened) grew by. A segment before the last is closed: stat'ed one last time,
        then never again, so a long run does not cost more per sample."""
        self.queue_depth.set(held)
        grown = 0
        for index in range(self._first_open, len(segments)):
            try:
                size = os.stat(segments[index]).st_size
            except OSError:
                size = self._open_bytes
            grown += max(0, size - self._open_bytes)
            if index < len(segments) - 1:  # closed: the next one is being written
                self._first_open, self._open_bytes = index + 1, 0
            else:
                self._open_bytes = max(size, self._open_bytes)
        if grown:
            self.recorded_bytes.inc(grown)

    async def sample_every(self, seconds: float, held: Callable[[], int],
                           segments: Callable[[], Sequence[str | os.PathLike[str]]]) -> None:
        """`sample` every `seconds` until cancelled."""
        while True:
            self.sample(held(), segments())
            await asyncio.sleep(seconds)
