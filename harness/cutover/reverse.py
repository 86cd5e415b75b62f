"""The worker side of a moved exchange: the candidate (native) answered the client, and the primary
(Docker, still production for everyone else) receives the mirror, with the safety rules reversed.

A safe request is mirrored to the primary. An unsafe one reaches it only where the primary has
proven it cannot execute it for real: a `dry-run` route with a rewrite it honours (a dry-run path
or header, the answer checked for the proof) and its precondition proven on the primary, if the
route declares one. Otherwise (orders on the live trade service, `always` routes, which are side
effect free on the candidate's own database but not on production) it is not sent at all: every
order executes once, on the side that served it.

The exchange is then judged docker vs native, as every other: `primary` holds Docker's answer,
`candidate` the native answer the client got; it is recorded with `mirror` "reverse" (or
"reverse-dry-run"), so the report tells moved traffic apart.
"""

from __future__ import annotations

from typing import Any

from harness.mirror.policy import MirrorDecision, MirrorPolicy
from harness.model import SAFE_METHODS, Exchange, Request, Response, Verdict

NOT_TO_PRODUCTION = ("served by the candidate; an unsafe request reaches the primary "
                     "(production) only as a dry run it honours (a dry-run path or header), and "
                     "this route has none")


class ReversePolicy(MirrorPolicy):
    """The mirror policy towards the primary (see the module)."""

    def decide(self, route: Any, request: Request) -> MirrorDecision:
        if request.method.upper() not in SAFE_METHODS:
            rewrite = route.dry_run
            if route.mirror != "dry-run" or not (rewrite and rewrite.rewrites):
                return MirrorDecision(None, f"skipped:{NOT_TO_PRODUCTION}")
        return super().decide(route, request)


class _Unjudged:
    """Stands in for the engine while the mirror runs reversed: the exchange is judged once,
    after its answers are put the right way round (judging it reversed would teach noise)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.config = engine.config

    def judge(self, exchange: Exchange, route: Any) -> Exchange:
        return exchange


def reverse_mirror(client: Any, engine: Any, breakers: Any, primary: str, secondary: str | None,
                   timeout_s: float) -> Any:
    """A `harness.mirror.Mirror` whose mirrored side is the primary (with `ReversePolicy`, the
    breakers shared with the forward mirror, and correlators of its own: native ids → Docker's)."""
    from harness.mirror.step import Mirror

    return Mirror(client, _Unjudged(engine), ReversePolicy(breakers), primary, secondary,
                  timeout_s)


async def mirror_moved(mirror: Any, engine: Any, exchange: Exchange, route: Any) -> Exchange:
    """Mirror a moved `exchange` (its `primary` holds the native answer the client got) to the
    primary and judge it docker vs native."""
    served = exchange.primary
    await mirror.run(exchange, route, settle=False)
    critical = [d for d in exchange.differences if str(d.severity) == "critical"]
    if exchange.mirror.startswith("skipped"):
        reason = exchange.mirror.partition(":")[2]
        exchange.mirror = "skipped:" + reason.replace("candidate not proven", "primary not proven")
        exchange.primary = Response(error=f"not asked: {exchange.mirror[8:]}")
    else:
        exchange.primary = exchange.candidate or Response(error="no answer")
        if exchange.primary.error:  # Docker's failure is not the candidate's: not judged
            exchange.mirror = f"skipped:the primary failed the mirror ({exchange.primary.error})"
        else:
            exchange.mirror = "reverse-dry-run" if exchange.mirror == "dry-run" else "reverse"
    exchange.candidate = served
    engine.judge(exchange, route)
    if critical:  # a dry-run breach on the primary: kept whatever the answers say
        exchange.verdict = Verdict.MISMATCH
        exchange.differences.extend(critical)
    return exchange
