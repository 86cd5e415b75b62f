"""The shadow addon: mitmproxy answers every client from the primary, untouched; this addon hands a
copy of each finished exchange (the request and the primary's answer, taken in the `response`
hook) to mirror worker processes, which send it to the candidate, judge and record it.

The hook costs a few microseconds: it collects references into a tuple, pickles it and writes it
to a non-blocking pipe. A full pipe drops (and counts) the mirror; the proxy never waits for a
worker, and nothing the candidate does can change, delay or fail a production answer.
WebSocket upgrades and server-sent events pass through untouched (events streamed as they come)
and are counted, not mirrored. Every answered request ends in exactly one outcome (compared,
skipped by policy, dropped, abandoned, too large, stream, not sampled, refused by the proxy, not
recorded, failed in a worker: see `counters`). The counter totals are also written, every
supervision tick and at exit, to ``<recordings>/shadow-counters-<start stamp>-<pid>.json``, where
`parity report` finds them.

    mitmdump --mode reverse:http://primary:8000 -s harness/shadow/addon.py \\
             --set parity_candidate=http://native:8000 --set parity_recordings=recordings/

Give each option once: when an addon option is set twice with --set, mitmproxy 11 cannot load the
script and runs without it, silently. `parity shadow` runs the same addon in a leaner proxy
(see `proxy.py`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
import zlib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from harness.files import write_atomically
from harness.mirror.policy import breaker_file
from harness.settings import (
    SHADOW_DEFAULTS,
    CutoverTargets,
    SettingError,
    ShadowSettings,
    ShadowTargets,
    all_declared,
    from_options,
)
from harness.shadow import counters as c
from harness.shadow.capture import capture, client_address
from harness.shadow.counters import Counters
from harness.shadow.pool import WorkerPool
from harness.shadow.settings import WorkerSettings

if TYPE_CHECKING:  # imported only with parity_metrics (prometheus_client), parity_admin
    from harness.cutover.control import CutoverControl
    from harness.metrics.shadow import ShadowMetrics

log = logging.getLogger("parity.shadow")

LOG_EVERY_S = 10.0
SERVED_HEADER = "X-Parity-Served-By"  # --mark-served
SUPERVISE_EVERY_S = 1.0
COUNTERS_PREFIX = "shadow-counters-"  # <prefix><UTC yyyymmddTHHMMSS>-<pid>.json
OPTIONS = tuple((item.option, item) for item in all_declared() if item.option)


def write_counters(path: Path, data: dict) -> None:
    """Write `data` as JSON to `path` atomically, so a reader never sees half a file. Raises
    OSError (disk full...)."""
    write_atomically(path, orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


def client_of(flow: http.HTTPFlow) -> str:
    """The client behind `flow`: the first X-Forwarded-For hop, else the peer's address."""
    peer = flow.client_conn.peername
    return client_address(flow.request.headers.fields, peer[0] if peer else "")


class ShadowAddon:
    """Mirrors production traffic to the candidate, off the proxy's hot path."""

    def __init__(self) -> None:
        self.counters = Counters()
        self.pool: WorkerPool | None = None
        self.sample = 1.0
        self._watcher: asyncio.Task[None] | None = None
        self._runtime_dir: str | None = None
        self._started = False
        self._started_at = ""
        self.counters_path: Path | None = None
        self._counters_written: dict[str, int] | None = None
        self._counters_failed = False
        self.metrics: ShadowMetrics | None = None  # with parity_metrics
        self._drain_s = SHADOW_DEFAULTS.drain_s
        self.cutover: CutoverControl | None = None  # with parity_admin
        self._admin_token = ""

    def load(self, loader: Loader) -> None:
        # One option per declared setting that has one (harness.settings).
        for option, item in OPTIONS:
            loader.add_option(option, item.option_type, item.option_default, item.help)

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        for option, item in OPTIONS:
            if option in updated:
                try:
                    item.parse(getattr(opts, option))
                except SettingError as exc:
                    raise exceptions.OptionsError(f"{option}: {exc}") from None
        if "parity_sample" in updated:
            self.sample = float(opts.parity_sample)
        if "parity_config" in updated and opts.parity_config:
            from harness.config import load_config
            from harness.errors import ConfigError

            try:
                load_config(opts.parity_config)
            except ConfigError as exc:
                raise exceptions.OptionsError(f"parity_config: {exc}") from None
        if "parity_admin" in updated and opts.parity_admin:
            from harness.cutover.control import read_admin_token
            from harness.metrics.shadow import parse_listen

            try:
                parse_listen(opts.parity_admin, "parity_admin")
                self._admin_token = read_admin_token(opts.parity_admin_token_file or None)
            except ValueError as exc:
                raise exceptions.OptionsError(f"parity_admin: {exc}") from None
        if "parity_metrics" in updated and opts.parity_metrics:  # last: every option is valid
            self._start_metrics(opts.parity_metrics)
        if self.pool is not None and updated & {"parity_candidate", "parity_secondary",
                                                "parity_config", "parity_workers"}:
            log.warning("shadow: %s changed; restart the proxy for it to take effect",
                        ", ".join(sorted(updated)))

    def running(self) -> None:
        if self._started:
            return
        self._started = True
        opts = ctx.options
        if not opts.parity_candidate:
            # Logged as an error during start-up: mitmproxy's errorcheck then exits.
            log.error("shadow: parity_candidate is not set; nothing would be mirrored "
                      "(--set parity_candidate=http://native:8000)")
            return
        try:
            Path(opts.parity_recordings).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("shadow: parity_recordings %r: %s", opts.parity_recordings, exc)
            return
        self._runtime_dir = tempfile.mkdtemp(prefix="parity-shadow-")
        now = datetime.now(UTC)
        self._started_at = now.isoformat(timespec="seconds")
        self.counters_path = Path(opts.parity_recordings) / (
            f"{COUNTERS_PREFIX}{now.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json")
        targets = from_options(ShadowTargets, lambda option: getattr(opts, option))
        shadow = from_options(ShadowSettings, lambda option: getattr(opts, option))
        settings = WorkerSettings.derived(
            targets, shadow,
            # Shared with the replay and pytest on these recordings.
            breakers=str(file) if (file := breaker_file(targets.recordings)) else None,
            metrics_dir=str(self.metrics.directory) if self.metrics else None,
        )
        if opts.parity_admin and not self._start_cutover(settings):
            return
        if self.cutover is not None:
            settings = replace(settings, primary=self.cutover.primary, cutover=True)
        if self.metrics is not None:
            self.metrics.watch_breakers(settings.breakers)
        self.pool = WorkerPool(settings, shadow.workers, self.counters)
        if self.cutover is not None:
            self.pool.on_judged = self.cutover.take
        self.pool.start()
        self._drain_s = shadow.drain_s
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        log.info("shadow: mirroring to %s%s with %d worker(s), sample %g, timeout %gs",
                 settings.candidate,
                 f" (secondary {settings.secondary})" if settings.secondary else "",
                 shadow.workers, shadow.sample, shadow.timeout_s)

    def _start_cutover(self, settings: WorkerSettings) -> bool:
        """The cutover's routing, judge, state and admin listener; False (an error logged, so
        the start-up fails) when the state cannot be read or the admin port is taken."""
        from harness.config import load_config, load_cutover_plan
        from harness.cutover.control import CutoverControl, bind
        from harness.cutover.state import STATE_NAME, CutoverError
        from harness.errors import ConfigError
        from harness.metrics.shadow import parse_listen
        from harness.mirror.transport import TransportSettings

        opts = ctx.options
        cut = from_options(CutoverTargets, lambda option: getattr(opts, option))
        primary = cut.primary or next(
            (m.partition(":")[2] for m in opts.mode if m.startswith("reverse:")), "")
        if not primary:
            log.error("shadow: the cutover needs the primary's URL (parity_primary)")
            return False
        state_path = Path(cut.cutover_state or Path(settings.recordings) / STATE_NAME)
        verify = TransportSettings(verify=settings.verify,
                                   ca_bundle=settings.ca_bundle).ssl_context()
        try:
            host, port = parse_listen(cut.admin, "parity_admin")
            config = load_config(settings.config_path)
            if cut.cutover_plan:
                config = replace(config, cutover=load_cutover_plan(cut.cutover_plan,
                                                                   config.cutover))
            control = CutoverControl(
                config=config, primary=primary,
                candidate=settings.candidate, state_path=state_path,
                admin_token=self._admin_token, timeout_s=settings.timeout_s, verify=verify,
                mark_served=cut.mark_served, counters=self.counters)
            sock = bind(host, port)
        except (CutoverError, ConfigError, OSError) as exc:
            log.error("shadow: cutover: %s", exc)
            return False
        self.cutover = control
        asyncio.get_running_loop().create_task(control.start(sock))
        log.info("shadow: cutover admin on http://%s:%d, state in %s", host, port, state_path)
        return True

    def _start_metrics(self, listen: str) -> None:
        """Serve /metrics on `listen` (see harness.metrics.shadow) from now on, so a bad or
        taken address fails the start-up as an option error."""
        from harness.metrics.shadow import MetricsError, ShadowMetrics, parse_listen

        if self.metrics is not None:
            log.warning("shadow: parity_metrics changed; restart the proxy for it to take effect")
            return
        try:
            metrics = ShadowMetrics(*parse_listen(listen, "parity_metrics"),
                                    os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
            metrics.start()
        except (ValueError, MetricsError) as exc:
            raise exceptions.OptionsError(str(exc)) from None
        self.metrics = metrics
        log.info("shadow: metrics on http://%s:%d/metrics", metrics.host, metrics.port)

    # --- the hot path ------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        cutover = self.cutover
        if cutover is not None and flow.live and not flow.is_replay:
            await cutover.request(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is not None and response.headers.get(
                "content-type", "").startswith("text/event-stream"):
            response.stream = True  # pass events through as they come

    def response(self, flow: http.HTTPFlow) -> None:
        pool = self.pool
        if pool is None or not flow.live or flow.is_replay:
            return
        response = flow.response
        if response is None:
            return
        # With a cutover, a moved exchange is captured with who served it (the worker then
        # mirrors it to the primary).
        served = flow.metadata.get("parity_served", "primary")
        self._hand_off(flow, pool, response, served)
        if self.cutover is not None and self.cutover.mark_served:
            response.headers[SERVED_HEADER] = served  # after the capture: recorded as sent

    def _hand_off(self, flow: http.HTTPFlow, pool: WorkerPool, response: http.Response,
                  served: str) -> None:
        """Count the answered request and hand its exchange to a worker, or count why not."""
        pool.counts[c.ANSWERED] += 1  # and exactly one outcome below (or in a worker)
        if served == "proxy":  # the cutover's own 503: neither side answered, nothing to judge
            pool.counts[c.REFUSED] += 1
            return
        if response.data.content is None or flow.request.data.content is None \
                or flow.websocket is not None or response.status_code == 101:
            pool.counts[c.STREAMS] += 1  # streamed (server-sent events, large bodies), upgraded
            return
        client = ""
        if self.sample < 1.0 or pool.size > 1:
            client = client_of(flow)
            # A client is in the sample or not, for all its requests: a create is never
            # mirrored without the reads that follow it. One client, one worker.
            if zlib.crc32(client.encode()) >= self.sample * 2**32:
                pool.counts[c.NOT_SAMPLED] += 1
                return
        captured = capture(flow)
        pool.submit((*captured, served) if served == "candidate" else captured, client)

    # --- counts, supervision, exit -----------------------------------------------------------

    async def _watch(self) -> None:
        last_line, last_totals = time.monotonic(), None
        while self.pool is not None:
            await asyncio.sleep(SUPERVISE_EVERY_S)
            if self.pool is None:
                return
            workers = self.pool.pids
            self.pool.supervise()
            self._save_counters(final=False)
            if self.metrics is not None:
                self.metrics.tick(self.counters.totals(), set(workers) - set(self.pool.pids))
            if time.monotonic() - last_line >= LOG_EVERY_S:
                totals = self.counters.totals()
                if totals != last_totals:  # an idle proxy does not repeat itself
                    log.info(self.counters.summary())
                last_line, last_totals = time.monotonic(), totals

    def _save_counters(self, *, final: bool) -> None:
        """The counter totals to `counters_path` (when they changed, and always at exit). A
        failure (disk full) is logged once and never affects the proxy."""
        if self.counters_path is None:
            return
        totals = self.counters.totals()
        if not final and totals == self._counters_written:
            return
        data = {"started": self._started_at, "pid": os.getpid(),
                "updated": datetime.now(UTC).isoformat(timespec="seconds"), "final": final,
                "totals": totals}
        try:
            write_counters(self.counters_path, data)
        except OSError as exc:
            if not self._counters_failed:
                log.warning("shadow: cannot write the counters to %s: %s", self.counters_path,
                            exc)
            self._counters_failed = True
            return
        self._counters_written = totals

    async def done(self) -> None:
        pool, self.pool = self.pool, None
        if self.cutover is not None:
            await self.cutover.stop()
        if self._watcher is not None:
            self._watcher.cancel()
        if pool is not None:
            await pool.stop(self._drain_s)
            self._save_counters(final=True)
            log.info("%s (final)", self.counters.summary())
        if self.metrics is not None:
            self.metrics.close()
        if self._runtime_dir:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)


addons = [ShadowAddon()]
