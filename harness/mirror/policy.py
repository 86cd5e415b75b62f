"""The mirror policy: which requests may reach the candidate, and in what form.

Shared by the shadow proxy's workers and the replay so both obey one rule:

- Safe methods are mirrored; any other method only when its route says `dry-run` (sent as a dry
  run: rewritten when the route says how, and only to sides that proved the route's precondition,
  see `harness.mirror.preconditions`) or `always` (declared side-effect free on the candidate).
  Everything else is skipped, with the reason as the recorded label.
- **Breakers.** When a side's answer to a dry-run mirror does not prove the dry run, that route
  stops being mirrored at once. The breaker file beside the recordings (`breakers_beside`) shares
  the stop between every process using those recordings: all shadow workers (a restarted one
  too), `parity replay` and `pytest -m parity`. Tripped routes are appended to it as JSON lines
  and each decision looks at what was appended since; deleting the file closes them again.
- **An order reaches the candidate at most once.** No retries of unsafe requests (the transport
  never retries), and an unsafe request carrying an idempotency identifier (``client_order_id``,
  ``Idempotency-Key``...) already sent is skipped. The shadow proxy sends all requests of one
  client to the same worker, so this memory can stay in the process.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from harness.model import SAFE_METHODS, Request, header
from harness.routes import Route

log = logging.getLogger("parity.policy")

REMEMBERED_ORDERS = 100_000
IDEMPOTENCY_HEADERS = ("idempotency-key", "x-idempotency-key", "x-client-order-id")
IDEMPOTENCY_FIELDS = ("client_order_id", "clientOrderId", "newClientOrderId", "idempotency_key")
# Not a recordings segment (those end in .jsonl), so readers of the directory never take it for one.
BREAKER_FILE = "parity-breakers.ndjson"


@dataclass(frozen=True, slots=True)
class MirrorDecision:
    """What to send to the candidate (None: nothing) and the label recorded as `Exchange.mirror`."""

    request: Request | None
    label: str

    @property
    def skipped(self) -> bool:
        return self.request is None


class Breakers:
    """Routes whose mirroring is stopped; shared through an append-only file of JSON lines when
    `path` is given, this object's alone otherwise."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else None
        self._open: dict[str, str] = {}
        self._seen_size = 0

    def reason(self, route_name: str) -> str | None:
        """Why `route_name` is stopped, or None while it may be mirrored."""
        self._refresh()
        return self._open.get(route_name)

    def trip(self, route_name: str, reason: str) -> bool:
        """Stop mirroring `route_name` everywhere; True the first time (then it logs loudly)."""
        self._refresh()
        if route_name in self._open:
            return False
        self._open[route_name] = reason
        if self.path is not None:
            line = orjson.dumps({"route": route_name, "reason": reason}) + b"\n"
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)  # one append: whole lines even with several writers
                finally:
                    os.close(fd)
            except OSError as exc:  # the stop still holds in this process
                log.error("breaker file %s: cannot write (%s); other tools will not see this "
                          "trip", self.path, exc)
        log.critical(
            "BREAKER OPEN for %s: %s. Mirroring of this route is stopped: a real order may have "
            "been placed on the candidate. Check the candidate's dry-run handling before "
            "mirroring this route again%s.", route_name, reason,
            f" (then delete {self.path})" if self.path else "")
        return True

    @property
    def tripped(self) -> dict[str, str]:
        """Stopped routes with their reasons."""
        self._refresh()
        return dict(self._open)

    def _refresh(self) -> None:
        if self.path is None:
            return
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == self._seen_size:
            return
        with self.path.open("rb") as file:
            file.seek(self._seen_size)
            chunk = file.read(size - self._seen_size)
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next look
        self._seen_size += end
        for line in chunk[:end].splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            self._open.setdefault(entry["route"], entry["reason"])


# A recordings directory or segment file, or a list of them.
_Place = str | os.PathLike[str]
Recordings = _Place | Sequence[_Place] | None


def breaker_file(recordings: Recordings) -> Path | None:
    """Where the breakers of every tool working on `recordings` (a directory, a segment file, or
    a list of them: the first one's directory) live: shadow, replay and pytest stop each other's
    routes. None without recordings, or when their directory cannot be made."""
    if recordings is not None and not isinstance(recordings, str | os.PathLike):
        recordings = recordings[0] if recordings else None
    if not recordings:
        return None
    path = Path(recordings)
    directory = path if path.is_dir() or not path.suffix else path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # unwritable: the recordings reader reports it; trips stay in-process
    return directory / BREAKER_FILE


def breakers_beside(recordings: Recordings) -> Breakers:
    """The breakers shared through `breaker_file(recordings)`; this process's own without one."""
    return Breakers(breaker_file(recordings))


def idempotency_key(request: Request) -> str | None:
    """The identifier that makes an unsafe request one order: an idempotency header, or a
    ``client_order_id``-like field at the top of the JSON body or in its ``order`` object."""
    for name in IDEMPOTENCY_HEADERS:
        value = header(request.headers, name)
        if value:
            return f"{name}={value}"
    text = request.body.text
    if not text or text.lstrip()[:1] != "{":
        return None
    try:
        data: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    for node in (data, data.get("order") if isinstance(data, dict) else None):
        if isinstance(node, dict):
            for name in IDEMPOTENCY_FIELDS:
                value = node.get(name)
                if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                    return f"{name}={value}"
    return None


class MirrorPolicy:
    """Decides per request; keeps the breakers and the orders already sent."""

    side = "candidate"  # the mirrored side, as its skip reasons name it

    def __init__(self, breakers: Breakers | None = None,
                 remembered: int = REMEMBERED_ORDERS) -> None:
        self.breakers = breakers or Breakers()
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._remembered = remembered
        self.duplicates = 0
        self.trips = 0

    def decide(self, route: Route, request: Request) -> MirrorDecision:
        """The request to mirror for `route` (a `harness.routes.Route`), or a skip with its
        reason as the label."""
        reason = self.breakers.reason(route.name)
        if reason is not None:
            return MirrorDecision(None, f"skipped:breaker open ({reason})")
        if route.mirror == "never":
            return MirrorDecision(None, "skipped:route never mirrored")
        method = request.method.upper()
        if method in SAFE_METHODS:
            return MirrorDecision(request, "mirrored")
        if route.mirror == "dry-run":
            rewrite = route.dry_run
            if not (rewrite and rewrite.rewrites) and route.precondition is None:
                return MirrorDecision(None, "skipped:dry-run route without a rewrite or a "
                                            "precondition")
            decision = MirrorDecision(rewrite.apply(request) if rewrite else request, "dry-run")
        elif route.mirror == "always":
            decision = MirrorDecision(request, "mirrored")
        else:
            return MirrorDecision(None, f"skipped:unsafe method {method}")
        return decision if self._first_time(route, request) else MirrorDecision(
            None, f"skipped:duplicate order: already sent to the {self.side} once")

    def _first_time(self, route: Route, request: Request) -> bool:
        key = idempotency_key(request)
        if key is None:
            return True
        key = f"{route.name} {key}"
        if key in self._sent:
            self.duplicates += 1
            return False
        self._sent[key] = None
        if len(self._sent) > self._remembered:
            self._sent.popitem(last=False)
        return True

    def forget(self, route: Route, request: Request) -> None:
        """`request` was not sent after all (a side did not prove the route's precondition): a
        later retry of the same order may go."""
        key = idempotency_key(request)
        if key is not None:
            self._sent.pop(f"{route.name} {key}", None)

    def trip(self, route_name: str, reason: str) -> bool:
        """Stop mirroring `route_name` (in every process sharing the breaker file); True the
        first time."""
        first = self.breakers.trip(route_name, reason)
        self.trips += first
        return first

    @property
    def tripped(self) -> dict[str, str]:
        """Routes whose breaker is open, with the reason."""
        return self.breakers.tripped
