"""The mirror worker processes of one proxy, each fed through its own pipe (see `channel`).

Requests of one client always go to the same worker, so the identifiers it learned (correlation)
and the orders it sent (no order twice) are there for that client's later requests. Workers run
in their own session (a Ctrl-C or SIGTERM for the proxy's process group does not cut them off),
at a lower CPU priority than the proxy (niced, and in SCHED_IDLE by default: CPU time nothing
else wants), and on the other cores when the proxy is pinned. A worker
that dies is restarted; at exit the pool closes the pipes, lets the workers finish what they hold
(up to a drain time), then stops stragglers with SIGTERM (they flush and exit) and SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson

import harness
from harness.shadow import counters as c
from harness.shadow.capture import Captured
from harness.shadow.channel import Sender, open_pipe
from harness.shadow.counters import Counters
from harness.shadow.settings import WorkerSettings

log = logging.getLogger("parity.shadow")

# Exchanges with more body than this are not mirrored (counted `too-large`).
MAX_CAPTURE_BYTES = 32 * 1024 * 1024
RESTART_AFTER_S = 2.0  # a worker that keeps dying is restarted at most this often
STOP_GRACE_S = 10.0


def _move_to_other_cores(pid: int) -> None:
    """When the proxy is pinned to some cores, its workers run on the others."""
    try:
        mine = os.sched_getaffinity(0)
        others = set(range(os.cpu_count() or 1)) - mine
        if others:
            os.sched_setaffinity(pid, others)
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: the OS schedules them


@dataclass(slots=True)
class _Slot:
    index: int
    generation: int
    name: str
    process: subprocess.Popen[bytes]
    sender: Sender
    stats_fd: int
    started: float = field(default_factory=time.monotonic)
    stats_buffer: bytearray = field(default_factory=bytearray)
    sent: int = 0  # exchanges handed to this worker


def leave_idle_class(pid: int = 0) -> None:
    """Move process `pid` (0: this one) from SCHED_IDLE back to the normal class (niceness
    kept): its pipe has ended or is about to (the proxy is stopping, or gone), so no production
    answer competes for CPU any more, and what the worker holds must be finished within the
    proxy's drain time, not whenever the machine idles."""
    if not hasattr(os, "SCHED_IDLE"):
        return
    with contextlib.suppress(OSError):  # (gone already, or not allowed: it stays as it was)
        if os.sched_getscheduler(pid) == os.SCHED_IDLE:
            os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))


class WorkerPool:
    """`workers` mirror worker processes with `settings`; counts into `counters`."""

    def __init__(self, settings: WorkerSettings, workers: int, counters: Counters,
                 on_judged: Callable[[list], None] | None = None) -> None:
        self.settings = settings
        self.on_judged = on_judged  # the cutover's rollback judge: judged exchanges, at once
        self.size = workers
        self.counters = counters
        self.counts = counters.proxy  # the hot path increments it directly
        self._slots: list[_Slot] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._breakers_seen: set[str] = set()

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids."""
        return [slot.process.pid for slot in self._slots]

    def start(self) -> None:
        """Start the workers (in the running event loop)."""
        self._loop = asyncio.get_running_loop()
        self._slots = [self._spawn(index, 0) for index in range(self.size)]

    def _spawn(self, index: int, generation: int) -> _Slot:
        assert self._loop is not None
        name = f"w{index + 1}" + (f".{generation}" if generation else "")
        settings = replace(self.settings, name=name)
        read_fd, write_fd = open_pipe()
        stats_read, stats_write = os.pipe()
        package_root = str(Path(harness.__file__).resolve().parent.parent)
        pythonpath = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        argv = [sys.executable, "-m", "harness.shadow.worker", "--settings", settings.to_json(),
                "--fd", str(read_fd), "--stats-fd", str(stats_write)]
        try:
            process = subprocess.Popen(argv, pass_fds=(read_fd, stats_write),
                                       start_new_session=True, stdin=subprocess.DEVNULL,
                                       env={**os.environ, "PYTHONPATH": pythonpath})
        except BaseException:
            for fd in (write_fd, stats_read):
                os.close(fd)
            raise
        finally:
            os.close(read_fd)
            os.close(stats_write)
        _move_to_other_cores(process.pid)
        os.set_blocking(stats_read, False)
        slot = _Slot(index, generation, name, process, Sender(write_fd), stats_read)
        self._loop.add_reader(stats_read, self._read_stats, slot)
        return slot

    def submit(self, captured: Captured, key: str) -> None:
        """Hand one captured exchange to the worker of client `key`; never blocks (a full
        queue drops it and counts the drop)."""
        slots = self._slots
        if not slots:
            return
        if len(captured[3]) + len(captured[6]) > MAX_CAPTURE_BYTES:
            self.counts[c.TOO_LARGE] += 1
            return
        slot = slots[0] if len(slots) == 1 else slots[zlib.crc32(key.encode()) % len(slots)]
        if slot.sender.send(pickle.dumps(captured, pickle.HIGHEST_PROTOCOL)):
            self.counts[c.CAPTURED] += 1
            slot.sent += 1
        else:
            self.counts[c.DROPPED] += 1

    # --- reports from the workers ------------------------------------------------------------

    def _read_stats(self, slot: _Slot) -> None:
        while True:
            try:
                data = os.read(slot.stats_fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_stats(slot)
                return
            slot.stats_buffer += data
            *lines, rest = slot.stats_buffer.split(b"\n")
            slot.stats_buffer = bytearray(rest)
            for line in lines:
                self._take_report(line)

    def _take_report(self, line: bytes | bytearray) -> None:
        try:
            report = orjson.loads(line)
            if "judged" in report:
                if self.on_judged is not None:
                    self.on_judged(report["judged"])
                return
            self.counters.report(report["worker"], report["counts"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        for route, reason in report.get("breakers", {}).items():
            if route not in self._breakers_seen:
                self._breakers_seen.add(route)
                log.critical("shadow: BREAKER OPEN for %s (%s): this route is no longer "
                             "mirrored", route, reason)

    def _close_stats(self, slot: _Slot) -> None:
        if slot.stats_fd < 0:
            return
        if self._loop is not None:
            self._loop.remove_reader(slot.stats_fd)
        with contextlib.suppress(OSError):
            os.close(slot.stats_fd)
        slot.stats_fd = -1

    # --- supervision and stop ----------------------------------------------------------------

    def supervise(self) -> None:
        """Restart workers that died (crashed, killed); what they held is lost."""
        if self._stopping:
            return
        for index, slot in enumerate(self._slots):
            if slot.process.poll() is None:
                continue
            if time.monotonic() - slot.started < RESTART_AFTER_S:
                continue
            log.warning("shadow: worker %s exited with status %s; starting another", slot.name,
                        slot.process.returncode)
            self._retire(slot)
            self._slots[index] = self._spawn(index, slot.generation + 1)
            self.counts[c.RESTARTS] += 1

    def _retire(self, slot: _Slot) -> None:
        """Close a worker's pipes once it has exited. What it was handed and did not report an
        outcome for (it died, or was killed, holding them) is counted abandoned."""
        slot.sender.close()
        if slot.stats_fd >= 0:
            self._read_stats(slot)
        self._close_stats(slot)
        lost = slot.sent - self.counters.decided_by(slot.name)
        if lost > 0:
            self.counts[c.ABANDONED] += lost
        slot.sent = 0  # a slot retired twice (restarted, then stopped) counts its loss once

    async def stop(self, drain_s: float) -> None:
        """Close the pipes, wait up to `drain_s` for the workers to finish what they hold, then
        SIGTERM (they flush and exit) and, if need be, SIGKILL. No worker is left behind."""
        self._stopping = True
        for slot in self._alive():
            # A worker leaves SCHED_IDLE itself when its pipe ends, but on a busy machine an
            # idle-class process may not run at all to see the end, nor its SIGTERM later.
            leave_idle_class(slot.process.pid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_s  # one bound for the hand-off and the mirrors in flight
        for slot in self._slots:
            await slot.sender.drain(max(0.0, min(deadline - loop.time(), 5.0)))
            slot.sender.close()
        await self._wait_exit(deadline)
        for slot in self._alive():
            log.warning("shadow: worker %s still busy after %gs; stopping it (what it still "
                        "holds is not mirrored)", slot.name, drain_s)
            slot.process.terminate()
        await self._wait_exit(loop.time() + STOP_GRACE_S)
        for slot in self._alive():
            log.error("shadow: worker %s did not stop; killing it", slot.name)
            slot.process.kill()
            slot.process.wait()
        for slot in self._slots:
            self._retire(slot)

    def _alive(self) -> list[_Slot]:
        return [slot for slot in self._slots if slot.process.poll() is None]

    async def _wait_exit(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while self._alive() and loop.time() < deadline:
            await asyncio.sleep(0.05)
