"""The mirror policy: which requests may reach the candidate, and in what form.

Shared by the shadow proxy and the replay so both obey one rule: safe methods are mirrored; any
other method only when its route says `dry-run` (the request is rewritten into a dry run) or
`always` (declared side-effect free on the candidate). Everything else is skipped. A dry-run route
whose candidate answer does not prove the dry run trips a breaker that stops mirroring that route.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from harness.model import Request

log = logging.getLogger("parity.policy")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class MirrorDecision:
    """What to send to the candidate (None: nothing) and the label recorded as `Exchange.mirror`."""

    request: Request | None
    label: str

    @property
    def skipped(self) -> bool:
        return self.request is None


class MirrorPolicy:
    """Decides per request, and keeps the dry-run breaker per route (thread-safe)."""

    def __init__(self) -> None:
        self._tripped: dict[str, str] = {}
        self._lock = threading.Lock()

    def decide(self, route, request: Request) -> MirrorDecision:  # route: harness.routes.Route
        """The request to mirror for `route`, or a skip with its reason."""
        method = request.method.upper()
        reason = self._tripped.get(route.name)
        if reason is not None:
            return MirrorDecision(None, f"skipped:breaker open ({reason})")
        if route.mirror == "never":
            return MirrorDecision(None, "skipped:route never mirrored")
        if route.mirror == "dry-run" and method not in SAFE_METHODS:
            if route.dry_run is None:
                return MirrorDecision(None, "skipped:dry-run route without a rewrite")
            return MirrorDecision(route.dry_run.apply(request), "dry-run")
        if method in SAFE_METHODS or route.mirror == "always":
            return MirrorDecision(request, "mirrored")
        return MirrorDecision(None, f"skipped:unsafe method {method}")

    def trip(self, route_name: str, reason: str) -> bool:
        """Stop mirroring `route_name`; True the first time (the caller logs it loudly)."""
        with self._lock:
            if route_name in self._tripped:
                return False
            self._tripped[route_name] = reason
        log.critical(
            "BREAKER OPEN for %s: %s. Mirroring of this route is stopped: a real order may have "
            "been placed on the candidate. Check the candidate's dry-run handling.",
            route_name,
            reason,
        )
        return True

    @property
    def tripped(self) -> dict[str, str]:
        """Routes whose breaker is open, with the reason."""
        return dict(self._tripped)
