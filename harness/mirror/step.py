"""One mirrored exchange, as the shadow worker and the replay both do it: prove each side's
precondition (an unsafe request goes only to sides that proved it), translate identifiers, send
to the candidate (and secondary), check the dry-run proof, judge once (the engine), learn
correlations, let answers settle. Transport failures and timeouts become `candidate-error`
verdicts, never exceptions."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from harness.diff.lift import lift
from harness.judge.engine import Engine
from harness.mirror.correlation import Correlator
from harness.mirror.policy import MirrorPolicy
from harness.mirror.preconditions import Preconditions
from harness.mirror.transport import Client, send, unsendable
from harness.model import SAFE_METHODS, Exchange, Request, Response, Verdict
from harness.routes import Route
from harness.settings import SHADOW_DEFAULTS

UNSETTLED = (Verdict.MISMATCH, Verdict.UNTESTABLE)


@dataclass(slots=True)
class Mirror:
    """Everything one mirrored exchange needs; shared by all exchanges of a run."""

    client: Client
    engine: Engine
    policy: MirrorPolicy
    candidate_url: str
    secondary_url: str | None = None
    timeout_s: float = SHADOW_DEFAULTS.timeout_s
    correlators: dict[str, Correlator] = field(
        default_factory=lambda: {"candidate": Correlator(), "secondary": Correlator()}
    )
    preconditions: Preconditions | None = None  # made on first use, from the engine's config
    # The mirrored side as findings and breaker reasons name it ("primary" for a moved
    # request's reverse mirror, see harness.cutover.reverse).
    side: str = "candidate"

    async def _answers(self, request: Request,
                       with_secondary: bool = True) -> tuple[Response, Response | None]:
        sends = [send(self.client, self.candidate_url,
                      self.correlators["candidate"].translate(request), timeout_s=self.timeout_s)]
        if self.secondary_url and with_secondary:
            sends.append(send(self.client, self.secondary_url,
                              self.correlators["secondary"].translate(request),
                              timeout_s=self.timeout_s))
        answers = await asyncio.gather(*sends)
        return answers[0], answers[1] if len(answers) > 1 else None

    async def run(self, exchange: Exchange, route: Route, *,
                  secondary_recorded: Response | None = None, settle: bool = True,
                  deadline_s: float | None = None) -> Exchange:
        """Mirror `exchange` (whose primary answer is known) and judge it, once, from what was
        gathered: the answers and the dry-run proof. Past `deadline_s` (the whole mirror: the
        precondition proofs, the answers, the second check) the candidate's answer is that
        timeout, unless a dry-run order was answered and only its second check is unfinished:
        then it counts as failed (breaker tripped, critical finding). With `settle`, an answer
        the candidate has not finished (see `unfinished`) is asked again here; without, the
        caller may `settle` it later, beside the client's lane."""
        unproven = None
        try:
            async with asyncio.timeout(deadline_s):
                unproven = await self._gather(exchange, route, secondary_recorded)
        except TimeoutError:
            if deadline_s is None:
                raise
            if exchange.mirror == "dry-run" and exchange.candidate is not None:
                # The order reached the candidate and its second check never finished: fail
                # safe, as if the check had failed (breaker, critical finding).
                unproven = (f"dry run not confirmed after the answer (no check answer within "
                            f"the whole mirror's {deadline_s:g}s)")
                self.policy.trip(route.name, f"the {self.side}'s {unproven}")
            else:
                exchange.candidate = Response(
                    error=f"timeout after {deadline_s:g}s (whole mirror)")
        self.engine.judge(exchange, route, unproven=unproven)
        if exchange.mirror.startswith("skipped"):
            return exchange
        self._learn(route, exchange)
        if settle and self.unfinished(route, exchange):
            await self.settle(exchange, route, secondary_recorded=secondary_recorded)
        return exchange

    async def _gather(self, exchange: Exchange, route: Route,
                      secondary_recorded: Response | None) -> str | None:
        """Decide, prove the sides, send: set `exchange`'s mirror label and answers. Returns why
        the candidate did not prove the dry run it owed (None: it did, or owed none)."""
        decision = self.policy.decide(route, exchange.request)
        exchange.mirror = decision.label
        request = decision.request  # None: skipped
        if request is not None and (problem := unsendable(request)):
            exchange.mirror = f"skipped:{problem}"
        secondary_unproven = None
        if not exchange.mirror.startswith("skipped"):
            unproven, secondary_unproven = await self._prove_sides(route, exchange.request)
            if unproven:
                exchange.mirror = f"skipped:{unproven}"
        if request is None or exchange.mirror.startswith("skipped"):
            return None
        if secondary_unproven:  # recorded as the secondary's answer: it teaches nothing
            secondary_recorded = Response(error=secondary_unproven)
        exchange.candidate, secondary = await self._answers(request, not secondary_unproven)
        exchange.secondary = secondary or secondary_recorded
        return await self._check_dry_run(route, exchange, secondary_sent=not secondary_unproven)

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

    async def _prove_sides(self, route: Route, request: Request) -> tuple[str | None, str | None]:
        """Before an unsafe request of a route with a precondition, why it must go nowhere (the
        candidate has not proven it) and why not to the secondary; None where it may go."""
        precondition = route.precondition
        if precondition is None or request.method.upper() in SAFE_METHODS:
            return None, None
        if self.preconditions is None:
            self.preconditions = Preconditions(
                self.client, self.engine.config.safety.precondition_recheck_s, self.timeout_s)
        sides = [(self.side, self.candidate_url)]
        if self.secondary_url:
            sides.append(("secondary", self.secondary_url))
        unmet = await asyncio.gather(*(self.preconditions.unmet(side, url, precondition)
                                       for side, url in sides))
        what = "order" if route.comparator == "order" else "request"
        reasons = [None if why is None else
                   f"{side} not proven {precondition.described}: no {what} mirrored ({why})"
                   for (side, _), why in zip(sides, unmet, strict=True)]
        if reasons[0] is not None:
            self.policy.forget(route, request)  # not sent: a retry may go once it is proven
            return reasons[0], None
        return None, reasons[1] if len(reasons) > 1 else None

    async def _check_dry_run(self, route: Route, exchange: Exchange, *,
                             secondary_sent: bool) -> str | None:
        """The second check after a dry-run mirror: each answer proves the dry run (the route's
        `dry_run` proof), or, for a route that declares none, the side still proves its
        precondition right after answering (its dry-run switch was on while it took the order: the
        real trade service answers a dry run like any order). A breach trips the breaker; the
        candidate's is returned for the judge (None: no breach)."""
        if exchange.mirror != "dry-run":
            return None
        sent = exchange.secondary if self.secondary_url and secondary_sent else None
        if route.dry_run is not None:
            breaches = ["answer does not prove the dry run"
                        if self._breach(route, exchange.primary, answer) else None
                        for answer in (exchange.candidate, sent)]
        elif route.precondition is not None:
            unmet = await asyncio.gather(
                self._still_proven(route, exchange.primary, exchange.candidate,
                                   self.candidate_url),
                self._still_proven(route, exchange.primary, sent, self.secondary_url))
            breaches = [why and f"precondition failed right after the answer ({why})"
                        for why in unmet]
        else:
            return None
        candidate_breach, secondary_breach = breaches
        if secondary_breach:
            self.policy.trip(route.name, f"the secondary's {secondary_breach}")
        if candidate_breach:
            self.policy.trip(route.name, f"the {self.side}'s {candidate_breach}")
        return candidate_breach

    async def _still_proven(self, route: Route, primary: Response, answer: Response | None,
                            base_url: str | None) -> str | None:
        """Why a side that answered a precondition-only dry-run mirror no longer proves the
        precondition (asked again now, never from the cache); None when it does, or when it did
        not answer or rejected the request as the primary did (nothing was created)."""
        if (answer is None or answer.error or base_url is None or route.precondition is None
                or self.preconditions is None or _same_rejection(primary, answer)):
            return None
        return await self.preconditions.confirm(base_url, route.precondition)

    @staticmethod
    def _breach(route: Route, primary: Response, answer: Response | None) -> bool:
        """Whether a side's answer to a dry-run mirror fails to prove it. No answer, a transport
        error, or the same 4xx rejection as the primary's (a validation error creates nothing) is
        no breach."""
        if answer is None or answer.error or _same_rejection(primary, answer):
            return False
        return route.dry_run is not None and not route.dry_run.proven(lift(answer))


def _same_rejection(primary: Response, answer: Response) -> bool:
    """The side rejected the request with the primary's 4xx (a validation error creates
    nothing): no breach, whatever the body says."""
    return 400 <= answer.status < 500 and answer.status == primary.status

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
