"""One mirrored exchange, as the shadow worker and the replay both do it: translate identifiers,
send to the candidate (and secondary), judge, let answers settle, check the dry-run proof, learn
correlations. Transport failures become `candidate-error` verdicts, never exceptions."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from harness.compare.engine import Engine
from harness.correlation import Correlator
from harness.lift import lift
from harness.model import Difference, Exchange, Kind, Request, Response, Severity, Verdict
from harness.policy import SAFE_METHODS, MirrorPolicy
from harness.routes import Route
from harness.transport import Client, send, unsendable

UNSETTLED = (Verdict.MISMATCH, Verdict.UNTESTABLE)


@dataclass(slots=True)
class Mirror:
    """Everything one mirrored exchange needs; shared by all exchanges of a run."""

    client: Client
    engine: Engine
    policy: MirrorPolicy
    candidate_url: str
    secondary_url: str | None = None
    timeout_s: float = 5.0
    correlators: dict[str, Correlator] = field(
        default_factory=lambda: {"candidate": Correlator(), "secondary": Correlator()}
    )

    async def _answers(self, request: Request) -> tuple[Response, Response | None]:
        sends = [send(self.client, self.candidate_url,
                      self.correlators["candidate"].translate(request), timeout_s=self.timeout_s)]
        if self.secondary_url:
            sends.append(send(self.client, self.secondary_url,
                              self.correlators["secondary"].translate(request),
                              timeout_s=self.timeout_s))
        answers = await asyncio.gather(*sends)
        return answers[0], answers[1] if len(answers) > 1 else None

    async def run(self, exchange: Exchange, route: Route, *,
                  secondary_recorded: Response | None = None, settle: bool = True) -> Exchange:
        """Mirror `exchange` (whose primary answer is known) and judge it. With `settle`, an
        answer the candidate has not finished (see `unfinished`) is asked again here; without,
        the caller may `settle` it later, beside the client's lane."""
        decision = self.policy.decide(route, exchange.request)
        exchange.mirror = decision.label
        if not decision.skipped and (problem := unsendable(decision.request)):
            exchange.mirror = f"skipped:{problem}"
        if exchange.mirror.startswith("skipped"):
            return self.engine.judge(exchange, route)
        exchange.candidate, secondary = await self._answers(decision.request)
        exchange.secondary = secondary or secondary_recorded
        self.engine.judge(exchange, route)
        self._learn(route, exchange)
        self._check_dry_run(route, exchange)
        if settle and self.unfinished(route, exchange):
            await self.settle(exchange, route, secondary_recorded=secondary_recorded)
        return exchange

    def unfinished(self, route: Route, exchange: Exchange) -> bool:
        """Whether asking again can change `exchange`'s verdict: a safe request on a route with
        a settle time, judged a mismatch, whose candidate answer says it is not finished yet
        (see `answer_unfinished`). A finished answer that differs is final: never asked again."""
        return bool(route.settle_s and exchange.verdict in UNSETTLED
                    and exchange.request.method.upper() in SAFE_METHODS
                    and exchange.candidate is not None
                    and answer_unfinished(exchange.primary, exchange.candidate))

    async def settle(self, exchange: Exchange, route: Route, *,
                     secondary_recorded: Response | None = None) -> Exchange:
        """Ask the candidate again (backing off) while its answer is unfinished, for at most the
        route's `settle_s`; the last answer is judged. Only for safe requests (sent unchanged)."""
        deadline = time.monotonic() + route.settle_s
        delay = 0.05
        while self.unfinished(route, exchange) and time.monotonic() + delay < deadline:
            await asyncio.sleep(delay)  # the candidate may still be finishing (a backtest)
            delay = min(delay * 2, 1.0)
            exchange.candidate, secondary = await self._answers(exchange.request)
            exchange.secondary = secondary or secondary_recorded
            self.engine.judge(exchange, route)
        self._learn(route, exchange)
        return exchange

    def _learn(self, route: Route, exchange: Exchange) -> None:
        self.correlators["candidate"].learn(route, exchange.primary, exchange.candidate)
        if self.secondary_url:
            self.correlators["secondary"].learn(route, exchange.primary, exchange.secondary)

    def _check_dry_run(self, route: Route, exchange: Exchange) -> None:
        candidate = exchange.candidate
        if exchange.mirror != "dry-run" or candidate is None or candidate.error:
            return
        if route.dry_run.proven(lift(candidate)):
            return
        self.policy.trip(route.name, "the candidate's answer does not prove the dry run")
        exchange.verdict = Verdict.MISMATCH
        exchange.differences.append(Difference(
            route.dry_run.proof_path, Kind.CHANGED, route.dry_run.proof_value, None,
            "candidate did not prove the dry run: a real order may have been placed on the "
            "candidate; mirroring of this route is stopped", Severity.CRITICAL))


# A run's state as the candidate reports it while it is still working on it.
IN_PROGRESS = frozenset({"pending", "queued", "running", "in_progress", "in-progress",
                         "processing", "started", "submitted", "accepted"})
# Statuses of a resource not there yet (404: a just-created id; 409/425: not ready).
NOT_YET = frozenset({404, 409, 425})


def _progress(response: Response) -> str | None:
    if response.status == 202:
        return "accepted"
    tree = lift(response).body
    state = tree.get("status") if isinstance(tree, dict) else None
    return state.lower() if isinstance(state, str) else None


def answer_unfinished(primary: Response, candidate: Response) -> bool:
    """Whether the candidate's answer says it has not finished what the primary's answer shows
    finished: a 404/409/425 where the primary answered 2xx, or a pending/running state (or 202)
    where the primary's state is not one. Transport errors are final."""
    if candidate.error or not candidate.status or not primary.status:
        return False
    if candidate.status in NOT_YET:
        return 200 <= primary.status < 300
    return _progress(candidate) in IN_PROGRESS and _progress(primary) not in IN_PROGRESS
