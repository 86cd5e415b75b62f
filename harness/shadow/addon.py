"""The shadow addon: mitmproxy answers every client from the primary, untouched; this addon hands a
copy of each finished exchange to mirror worker processes through a bounded queue. A full queue
drops (and counts) the mirror, never blocks the proxy.

    mitmdump --mode reverse:http://primary:8000 -s harness/shadow/addon.py \\
             --set parity_candidate=http://native:8000 --set parity_recordings=recordings/
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue as queue_module
import random
import signal
import time
from urllib.parse import urlsplit

from mitmproxy import ctx, exceptions, http

from harness.shadow.worker import Captured, WorkerSettings, worker_main

log = logging.getLogger("parity.shadow")

LOG_EVERY_S = 10.0


def _check_url(option: str, value: str, *, required: bool) -> None:
    if not value:
        if required:
            raise exceptions.OptionsError(f"{option}: required (the candidate's base URL)")
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise exceptions.OptionsError(f"{option}: {value!r} is not an http(s) URL")


def _number(option: str, value: str, low: float, high: float | None = None) -> float:
    try:
        number = float(value)
    except ValueError:
        raise exceptions.OptionsError(f"{option}: {value!r} is not a number") from None
    if number < low or (high is not None and number > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise exceptions.OptionsError(f"{option}: must be {bounds}, got {value}")
    return number


def _move_to_other_cores(pid: int) -> None:
    """When the proxy is pinned to some cores, its workers run on the others."""
    try:
        mine = os.sched_getaffinity(0)
        others = set(range(os.cpu_count() or 1)) - mine
        if others:
            os.sched_setaffinity(pid, others)
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: leave scheduling to the OS


class ShadowAddon:
    """Mirrors production traffic to the candidate, off the hot path."""

    def __init__(self) -> None:
        self.queue = None
        self.stats_queue = None
        self.workers: list[multiprocessing.Process] = []
        self.counts = {"captured": 0, "dropped": 0, "not-sampled": 0, "streams": 0}
        self.worker_counts: dict[str, dict[str, int]] = {}
        self.sample = 1.0
        self._random = random.Random()
        self._logger_task: asyncio.Task | None = None
        self._spawn = None

    def load(self, loader) -> None:
        loader.add_option("parity_candidate", str, "",
                          "Base URL of the candidate (native) environment, e.g. http://host:9000")
        loader.add_option("parity_secondary", str, "",
                          "Base URL of a second primary copy, to learn noise from (optional)")
        loader.add_option("parity_config", str, "",
                          "parity.toml (routes, gates); the Cryptobot defaults if empty")
        loader.add_option("parity_recordings", str, "recordings",
                          "Directory where exchanges are recorded (redacted JSONL segments)")
        loader.add_option("parity_sample", str, "1.0",
                          "Share of requests mirrored, between 0 and 1")
        loader.add_option("parity_timeout", str, "5.0",
                          "Seconds a mirrored request may take on the candidate")
        loader.add_option("parity_queue_size", int, 10_000,
                          "Exchanges waiting for a worker at most; beyond, mirrors are dropped")
        loader.add_option("parity_workers", int, 1, "Mirror worker processes")
        loader.add_option("parity_insecure", bool, False,
                          "Do not verify the candidate's TLS certificate (test setups only)")
        loader.add_option("parity_ca_bundle", str, "",
                          "CA bundle to verify the candidate's and secondary's certificates")

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "parity_candidate" in updated:
            _check_url("parity_candidate", opts.parity_candidate, required=False)
        if "parity_secondary" in updated:
            _check_url("parity_secondary", opts.parity_secondary, required=False)
        if "parity_sample" in updated:
            self.sample = _number("parity_sample", opts.parity_sample, 0.0, 1.0)
        if "parity_timeout" in updated:
            _number("parity_timeout", opts.parity_timeout, 0.001)
        if "parity_queue_size" in updated and opts.parity_queue_size < 1:
            raise exceptions.OptionsError("parity_queue_size: must be at least 1")
        if "parity_workers" in updated and opts.parity_workers < 1:
            raise exceptions.OptionsError("parity_workers: must be at least 1")
        if "parity_config" in updated and opts.parity_config:
            from harness.config import load_config
            from harness.errors import ConfigError

            try:
                load_config(opts.parity_config)
            except ConfigError as exc:
                raise exceptions.OptionsError(f"parity_config: {exc}") from None

    def running(self) -> None:
        opts = ctx.options
        _check_url("parity_candidate", opts.parity_candidate, required=True)
        spawn = multiprocessing.get_context("spawn")
        self.queue = spawn.Queue(maxsize=opts.parity_queue_size)
        self.stats_queue = spawn.Queue(maxsize=1000)
        self._spawn = spawn
        for number in range(opts.parity_workers):
            settings = WorkerSettings(
                candidate=opts.parity_candidate,
                secondary=opts.parity_secondary or None,
                config_path=opts.parity_config or None,
                recordings=opts.parity_recordings,
                timeout_s=float(opts.parity_timeout),
                verify=not opts.parity_insecure,
                ca_bundle=opts.parity_ca_bundle or None,
                name=f"w{number + 1}",
            )
            self.workers.append(self._start_worker(settings))
        self._logger_task = asyncio.get_running_loop().create_task(self._log_loop())
        log.info("shadow: mirroring to %s with %d worker(s)", opts.parity_candidate,
                 len(self.workers))

    def _start_worker(self, settings: WorkerSettings):
        worker = self._spawn.Process(target=worker_main,
                                     args=(settings, self.queue, self.stats_queue),
                                     name=f"parity-worker-{settings.name}", daemon=True)
        worker._parity_settings = settings  # to restart it with the same settings
        # The child inherits this mask: a SIGTERM sent to the whole process group while the
        # worker is still importing stays pending instead of killing it (it drains, then exits).
        stopping = {signal.SIGTERM, signal.SIGINT}
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
        try:
            worker.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        _move_to_other_cores(worker.pid)
        return worker

    def _supervise(self) -> None:
        """Restart a worker that died (killed, crashed): its queue is still there, and a new
        worker records into a new segment."""
        for index, worker in enumerate(self.workers):
            if not worker.is_alive():
                log.warning("shadow: worker %s died (exit %s); starting a new one",
                            worker.name, worker.exitcode)
                self.counts["worker-restarts"] = self.counts.get("worker-restarts", 0) + 1
                self.workers[index] = self._start_worker(worker._parity_settings)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and flow.response.headers.get(
                "content-type", "").startswith("text/event-stream"):
            flow.response.stream = True  # pass server-sent events through as they come
            flow.metadata["parity_stream"] = True

    def response(self, flow: http.HTTPFlow) -> None:
        if self.queue is None or flow.response is None:
            return
        if flow.metadata.get("parity_stream") or flow.websocket is not None \
                or flow.response.status_code == 101:
            self.counts["streams"] += 1
            return
        if self.sample < 1.0 and self._random.random() >= self.sample:
            self.counts["not-sampled"] += 1
            return
        request, response = flow.request, flow.response
        started = request.timestamp_start or time.time()
        ended = response.timestamp_end or time.time()
        peer = flow.client_conn.peername
        captured = Captured(
            session=f"{peer[0]}:{peer[1]}" if peer else "anonymous",
            method=request.method,
            path=request.path.split("?", 1)[0],
            query=list(request.query.items(multi=True)),
            request_headers=[(k, v) for k, v in request.headers.items(multi=True)],
            request_body=request.raw_content or b"",
            status=response.status_code,
            response_headers=[(k, v) for k, v in response.headers.items(multi=True)],
            response_body=response.raw_content or b"",
            latency_ms=(ended - started) * 1000,
            ts=started,
        )
        try:
            self.queue.put_nowait(captured)
            self.counts["captured"] += 1
        except queue_module.Full:
            self.counts["dropped"] += 1

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        self.counts["streams"] += 1

    def _drain_stats(self) -> None:
        while self.stats_queue is not None:
            try:
                name, counts = self.stats_queue.get_nowait()
            except (queue_module.Empty, OSError, ValueError):
                return
            self.worker_counts[name] = counts

    def totals(self) -> dict[str, int]:
        """Proxy-side counts plus every worker's verdict counts."""
        self._drain_stats()
        totals = dict(self.counts)
        for counts in self.worker_counts.values():
            for name, value in counts.items():
                totals[name] = totals.get(name, 0) + value
        return totals

    def summary_line(self) -> str:
        t = self.totals()
        return (f"shadow: captured {t['captured']}, matched {t.get('match', 0)}, "
                f"mismatched {t.get('mismatch', 0)}, noise-only {t.get('noise-only', 0)}, "
                f"untestable {t.get('untestable', 0)}, skipped {t.get('skipped', 0)}, "
                f"candidate errors {t.get('candidate-error', 0)}, dropped {t['dropped']}, "
                f"streams {t['streams']}")

    async def _log_loop(self) -> None:
        last_line = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            self._supervise()
            if time.monotonic() - last_line >= LOG_EVERY_S:
                last_line = time.monotonic()
                log.info(self.summary_line())

    def done(self) -> None:
        if self._logger_task is not None:
            self._logger_task.cancel()
        if self.queue is None:
            return
        for _ in self.workers:
            try:
                self.queue.put(None, timeout=5)
            except queue_module.Full:
                break
        for worker in self.workers:
            worker.join(timeout=30)
            if worker.is_alive():
                log.warning("shadow: worker %s did not finish in time; terminating", worker.name)
                worker.terminate()
                worker.join(timeout=5)
        log.info(self.summary_line() + " (final)")
        self.queue = None


addons = [ShadowAddon()]
