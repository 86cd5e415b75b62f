"""The shadow proxy's `/metrics` endpoint, on its own listener (never the proxied one).

What the workers count per exchange (verdicts by group and route, latencies, errors, queue
depth, recorded bytes) they write to prometheus_client's multiprocess files in one directory;
what the proxy counts (captured, dropped, streams...) comes from a snapshot of its counters the
addon takes once a second (`tick`), so a scrape never touches the proxy's hot path or its live
objects. The server runs in its own thread.

The directory is emptied at start. A worker that died is marked dead (its live gauges go) and
its counter and histogram files are folded into one archive file per type, so restarts over a
long run do not grow the directory; collecting and folding hold the same lock, so a scrape
never sees a count twice or not at all (a counter never goes down).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness import metrics as m
from harness.mirror.policy import Breakers
from harness.model import Verdict
from harness.shadow import counters as c

if TYPE_CHECKING:  # prometheus_client is imported once the multiprocess directory is set
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.core import CounterMetricFamily, Metric

log = logging.getLogger("parity.shadow")

ARCHIVE_PID = "archive"  # <type>_archive.db holds what dead workers counted
_FOLDED_TYPES = ("counter", "histogram")  # live gauges of the dead are dropped, not folded

# The proxy's count names → (metric, reason label or None).
_PROXY_COUNTS: dict[str, tuple[m.MetricSpec, str | None]] = {
    c.CAPTURED: (m.CAPTURED, None),
    c.MIRRORED: (m.MIRRORED, None),
    c.DRY_RUN: (m.DRY_RUNS, None),
    c.RESTARTS: (m.WORKER_RESTARTS, None),
    c.WORKER_ERRORS: (m.WORKER_ERRORS, None),
    c.NOT_RECORDED: (m.NOT_RECORDED, None),
    c.BREAKERS: (m.BREAKER_TRIPS, None),
    **{name: (m.NOT_MIRRORED, name) for name in (c.DROPPED, c.TOO_LARGE, c.STREAMS,
                                                 c.NOT_SAMPLED, c.RETRIES_NOT_RESENT,
                                                 c.ABANDONED, c.REFUSED)},
}
# The `reason` labels of parity_shadow_not_mirrored_total (the alert rules may name only these).
NOT_MIRRORED_REASONS = frozenset(reason for _, reason in _PROXY_COUNTS.values() if reason)
_PER_GROUP = frozenset(str(v) for v in Verdict)  # exported by the workers, with their group


class MetricsError(Exception):
    """The metrics listener could not start (address in use...)."""


def parse_listen(value: str, option: str = "--metrics") -> tuple[str, int]:
    """`HOST:PORT` → (host, port); ValueError with a one-line message otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{option} {value!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    return host.strip("[]") or "127.0.0.1", int(port)


def prepare_directory(directory: str | os.PathLike[str]) -> Path:
    """Create the multiprocess directory, or empty it of a previous run's files."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


def fold_dead(directory: Path, pid: int) -> None:
    """Worker `pid` is gone: drop its live gauges, add its counters and histograms into the
    archive files and remove its own files."""
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    multiprocess.mark_process_dead(pid, str(directory))
    for kind in _FOLDED_TYPES:
        dead = directory / f"{kind}_{pid}.db"
        if not dead.exists():
            continue
        archive = MmapedDict(str(directory / f"{kind}_{ARCHIVE_PID}.db"))
        try:
            for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(dead)):
                total, _ = archive.read_value(key)
                archive.write_value(key, total + value, timestamp)
        finally:
            archive.close()
        dead.unlink()


class ShadowMetrics:
    """The collector behind the proxy's `/metrics` and the HTTP server that serves it.
    MetricsError when the multiprocess directory cannot be made or emptied."""

    def __init__(self, host: str, port: int,
                 directory: str | os.PathLike[str] | None = None) -> None:
        """`directory`: the multiprocess directory (emptied); a new temporary one, removed by
        `close`, when None."""
        self.host, self.port = host, port
        self._owns_directory = directory is None
        try:
            self.directory = prepare_directory(
                directory or tempfile.mkdtemp(prefix="parity-metrics-"))
        except OSError as exc:
            raise MetricsError(f"metrics directory {directory!r} (PROMETHEUS_MULTIPROC_DIR): "
                               f"{exc.strerror or exc}") from None
        self._breakers: Breakers | None = None
        self._lock = threading.Lock()
        self._totals: Mapping[str, int] = {}
        self._open_breakers: Mapping[str, str] = {}
        self._server: WSGIServer | None = None

    def start(self) -> None:
        """Serve `/metrics` on host:port in a thread; MetricsError when it cannot listen."""
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        try:
            self._server, _ = start_http_server(self.port, self.host, registry)
        except OSError as exc:
            raise MetricsError(f"--metrics {self.host}:{self.port}: cannot listen: "
                               f"{exc.strerror or exc}") from None

    def watch_breakers(self, path: str | None) -> None:
        """Show the breakers the workers trip in the file at `path` (as `tick` finds them)."""
        self._breakers = Breakers(path) if path else None

    def tick(self, totals: Mapping[str, int], gone: Iterable[int] = ()) -> None:
        """Take the proxy's counter totals (called from the proxy's loop once a second) and
        fold the files of the workers that are `gone`."""
        self._totals = dict(totals)
        if self._breakers is not None:
            self._open_breakers = self._breakers.tripped
        for pid in gone:
            with self._lock:
                try:
                    fold_dead(self.directory, pid)
                except (OSError, ValueError) as exc:  # a torn file must not stop the proxy
                    log.warning("shadow: metrics of worker %d not folded: %s", pid, exc)

    def collect(self) -> Iterator[Metric]:
        """The workers' metrics (multiprocess files) and the proxy's (its counters)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        from prometheus_client.multiprocess import MultiProcessCollector

        with self._lock:
            yield from MultiProcessCollector(None, str(self.directory)).collect()
        # Known counts are shown from the start, as zero: rate() and alerts see them at once.
        values: dict[tuple[m.MetricSpec, str | None], int] = dict.fromkeys(
            _PROXY_COUNTS.values(), 0)
        for name, value in self._totals.items():
            if name not in _PER_GROUP:
                values[_PROXY_COUNTS.get(name, (m.OTHER_COUNTS, name))] = value
        families: dict[str, CounterMetricFamily] = {}
        for (spec, reason), value in sorted(values.items(), key=lambda kv: (kv[0][0].name,
                                                                            kv[0][1] or "")):
            if spec.name not in families:
                families[spec.name] = CounterMetricFamily(spec.base, spec.help,
                                                          labels=spec.labels)
            families[spec.name].add_metric([reason] if reason else [], value)
        breakers = GaugeMetricFamily(m.BREAKER_OPEN.base, m.BREAKER_OPEN.help,
                                     labels=m.BREAKER_OPEN.labels)
        for route in sorted(self._open_breakers):
            breakers.add_metric([route], 1)
        yield from families.values()
        yield breakers

    def close(self) -> None:
        """Stop serving; remove the directory when this object made it."""
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(Exception):
                server.shutdown()
                server.server_close()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
