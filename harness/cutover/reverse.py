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

from harness.judge.engine import Engine
from harness.mirror.policy import MirrorDecision, MirrorPolicy
from harness.model import SAFE_METHODS, Exchange, Request, Response
from harness.routes import Route

NOT_TO_PRODUCTION = ("served by the candidate; an unsafe request reaches the primary "
                     "(production) only as a dry run it honours (a dry-run path or header), and "
                     "this route has none")


class ReversePolicy(MirrorPolicy):
    """The mirror policy towards the primary (see the module)."""

    side = "primary"

    def decide(self, route: Any, request: Request) -> MirrorDecision:
        if request.method.upper() not in SAFE_METHODS:
            rewrite = route.dry_run
            if route.mirror != "dry-run" or not (rewrite and rewrite.rewrites):
                return MirrorDecision(None, f"skipped:{NOT_TO_PRODUCTION}")
        return super().decide(route, request)


class _Unjudged(Engine):
    """Stands in for the engine while the mirror runs reversed: the exchange is judged once,
    after its answers are put the right way round (judging it reversed would teach noise). What
    the mirror step would have told the judge (a dry run the primary did not prove) is kept for
    that judgement."""

    def __init__(self, engine: Engine) -> None:  # not Engine.__init__: it learns nothing
        self.config = engine.config
        self.unproven: dict[int, str] = {}

    def judge(self, exchange: Exchange, route: Route | None = None, *,
              unproven: str | None = None) -> Exchange:
        if unproven is not None:
            self.unproven[id(exchange)] = unproven
        return exchange


def reverse_mirror(client: Any, engine: Any, breakers: Any, primary: str, secondary: str | None,
                   timeout_s: float) -> Any:
    """A `harness.mirror.Mirror` whose mirrored side is the primary (with `ReversePolicy`, the
    breakers shared with the forward mirror, and correlators of its own: native ids → Docker's)."""
    from harness.mirror.step import Mirror

    return Mirror(client, _Unjudged(engine), ReversePolicy(breakers), primary, secondary,
                  timeout_s, side="primary")


async def mirror_moved(mirror: Any, engine: Any, exchange: Exchange, route: Any,
                       deadline_s: float | None = None) -> Exchange:
    """Mirror a moved `exchange` (its `primary` holds the native answer the client got) to the
    primary, within `deadline_s` (the whole mirror, as harness.mirror.step bounds it), and judge
    it docker vs native."""
    served = exchange.primary
    try:
        await mirror.run(exchange, route, settle=False, deadline_s=deadline_s)
    finally:
        unproven = mirror.engine.unproven.pop(id(exchange), None)
    if exchange.mirror.startswith("skipped"):
        exchange.primary = Response(error=f"not asked: {exchange.mirror[8:]}")
    else:
        exchange.primary = exchange.candidate or Response(error="no answer")
        if exchange.primary.error:  # Docker's failure is not the candidate's: not judged
            exchange.mirror = f"skipped:the primary failed the mirror ({exchange.primary.error})"
        else:
            exchange.mirror = "reverse-dry-run" if exchange.mirror == "dry-run" else "reverse"
    exchange.candidate = served
    return engine.judge(exchange, route, unproven=unproven)
