"""Progress of a replay: a rich progress bar on a terminal, plain periodic lines otherwise
(CI, cron, systemd journals)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from harness.model import Exchange

PLAIN_EVERY_S = 5.0


class ReplayProgress:
    """Counts done / total, rate and mismatches so far; a context manager."""

    def __init__(self, total: int, *, fancy: bool, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.mismatches = 0
        self._fancy = fancy
        self._stream = stream or sys.stderr
        self._started = time.perf_counter()
        self._last_line = self._started
        self._progress: Progress | None = None
        self._task = TaskID(0)  # the bar's one task, added with the bar in __enter__

    def __enter__(self) -> ReplayProgress:
        if self._fancy:
            self._progress = Progress(
                TextColumn("[bold]replay"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>7.0f}/s"),
                TextColumn("[red]{task.fields[mismatches]} mismatches"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("replay", total=self.total, rate=0.0,
                                                 mismatches=0)
        return self

    def advance(self, exchange: Exchange) -> None:
        """Count one judged exchange."""
        self.done += 1
        if exchange.verdict == "mismatch":
            self.mismatches += 1
        now = time.perf_counter()
        if self._progress is not None:
            if self.done % 50 == 0 or self.done == self.total:
                self._progress.update(self._task, completed=self.done, rate=self.rate(now),
                                      mismatches=self.mismatches)
        elif now - self._last_line >= PLAIN_EVERY_S:
            self._last_line = now
            self._line(now)

    def rate(self, now: float) -> float:
        elapsed = now - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _line(self, now: float) -> None:
        print(
            f"replay: {self.done}/{self.total} exchanges, {self.rate(now):.0f}/s, "
            f"{self.mismatches} mismatches so far",
            file=self._stream,
            flush=True,
        )

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, rate=self.rate(
                time.perf_counter()), mismatches=self.mismatches)
            self._progress.stop()
        else:
            self._line(time.perf_counter())
