"""Preconditions: before an unsafe request of a route reaches a mirrored side (candidate or
secondary), that side must prove the state the route declares, e.g. the trade service answering
`GET /api/v1/settings/dry_run` with `{"dry_run": true}`. Never assumed: the first unsafe request
waits for the answer, and the answer is asked again once it is older than the recheck interval
(`[safety] precondition_recheck_s`). A wrong answer, an error status, a body that is not JSON or
an unreachable side all mean "not proven": that side gets nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from harness.diff.lift import lift
from harness.mirror.transport import Client, send
from harness.model import Request
from harness.routes import Precondition

log = logging.getLogger("parity.preconditions")


@dataclass(slots=True)
class _Proof:
    unmet: str | None  # None: proven
    checked_at: float


class Preconditions:
    """What each side last proved, per precondition; asks again when the answer is stale."""

    def __init__(self, client: Client, recheck_s: float, timeout_s: float) -> None:
        self.client = client
        self.recheck_s = recheck_s
        self.timeout_s = timeout_s
        self._proofs: dict[tuple[str, str], _Proof] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.checks = 0  # asked before sending (at most once per recheck interval per side)
        self.confirmations = 0  # asked again right after an answer

    async def unmet(self, side: str, base_url: str, precondition: Precondition) -> str | None:
        """Why `side` (at `base_url`) has not proven `precondition` now; None when it has."""
        key = (base_url, precondition.key)
        proof = self._proofs.get(key)
        if proof is not None and time.monotonic() - proof.checked_at < self.recheck_s:
            return proof.unmet
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # concurrent mirrors wait for one check instead of sending their own
            proof = self._proofs.get(key)
            if proof is None or time.monotonic() - proof.checked_at >= self.recheck_s:
                self.checks += 1
                asked_at = time.monotonic()  # the answer holds from when it was asked for
                proof = _Proof(await self._ask(base_url, precondition), asked_at)
                previous = self._proofs.get(key)
                self._proofs[key] = proof
                if previous is None or previous.unmet != proof.unmet:
                    self._log_change(side, precondition, proof.unmet)
        return proof.unmet

    async def confirm(self, base_url: str, precondition: Precondition) -> str | None:
        """Ask now, whatever the cache holds (the check after an answer); the answer replaces
        what the side last proved. Why it is not proven, or None."""
        key = (base_url, precondition.key)
        async with self._locks.setdefault(key, asyncio.Lock()):
            self.confirmations += 1
            asked_at = time.monotonic()
            proof = _Proof(await self._ask(base_url, precondition), asked_at)
            self._proofs[key] = proof
        return proof.unmet

    async def _ask(self, base_url: str, precondition: Precondition) -> str | None:
        answer = await send(self.client, base_url,
                            Request(precondition.method, precondition.path,
                                    headers=[("accept", "application/json")]),
                            timeout_s=self.timeout_s)
        if answer.error:
            return f"{precondition.method} {precondition.path}: {answer.error}"
        lifted = lift(answer)
        if lifted.kind != "json" and answer.status == 200:
            return f"{precondition.method} {precondition.path} answered no JSON"
        return precondition.unmet(answer.status, lifted.body)

    @staticmethod
    def _log_change(side: str, precondition: Precondition, unmet: str | None) -> None:
        if unmet is None:
            log.info("%s proven %s (%s %s): its unsafe requests of such routes are mirrored",
                     side, precondition.described, precondition.method, precondition.path)
        else:
            log.warning("%s not proven %s: %s; it gets no unsafe request of such routes",
                        side, precondition.described, unmet)
