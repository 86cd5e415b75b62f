"""The replay: recorded requests are sent again to the candidate (and, for routes whose answers age,
to the live primary), then compared with the same comparators, noise learning and correlation as
the shadow proxy. Nothing is ever replayed as a real order: the mirror policy applies unchanged.
A request carrying a secret the replay cannot restore is sent as recorded when the primary refused
it (a negative test stays negative) and skipped, with the reason, when the primary accepted it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from harness.config import Config
from harness.judge.engine import Engine
from harness.loop import run_async
from harness.mirror.policy import Breakers, MirrorPolicy
from harness.mirror.step import Mirror
from harness.mirror.transport import Client, TransportSettings, make_client, send
from harness.model import SAFE_METHODS, Exchange, Request, Verdict
from harness.replay.credentials import (
    MintedTokens,
    ServiceAccount,
    Tokens,
    carries_redacted,
    login,
    with_fresh_credentials,
)
from harness.replay.lanes import record_is_safe, run_lanes, session_key

UNRESTORABLE = ("credential not replayable: the primary accepted a secret the replay cannot "
                "restore (minted before the recordings, or another user's)")


@dataclass(frozen=True, slots=True)
class ReplayTargets:
    """Where to replay: the candidate always; a live primary/secondary optionally."""

    candidate: str
    primary: str | None = None
    secondary: str | None = None


@dataclass(slots=True)
class ReplayStats:
    """Counts per verdict, for the progress display and the exit code."""

    total: int = 0
    by_verdict: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def add(self, verdict: Verdict | None) -> None:
        self.total += 1
        key = str(verdict) if verdict else "unjudged"
        self.by_verdict[key] = self.by_verdict.get(key, 0) + 1

    @property
    def mismatches(self) -> int:
        return self.by_verdict.get("mismatch", 0)

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.total / elapsed if elapsed > 0 else 0.0


class _RateLimiter:
    """At most `rate` sends per second (a simple pacing clock), or no limit when rate is None."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = time.perf_counter()
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self._interval:
            return
        async with self._lock:
            now = time.perf_counter()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(self._next, now) + self._interval


class Replayer:
    """Replays recorded exchanges against live environments and judges each one."""

    def __init__(
        self,
        config: Config,
        targets: ReplayTargets,
        *,
        account: ServiceAccount | None = None,
        concurrency: int = 32,
        rate: float | None = None,
        shard: tuple[int, int] | None = None,
        transport: TransportSettings | None = None,
        on_exchange: Callable[[Exchange], None] | None = None,
        breakers: Breakers | None = None,
    ) -> None:
        self.config = config
        self.targets = targets
        self.account = account
        self.concurrency = concurrency
        self.shard = shard
        self.transport = transport or TransportSettings(max_connections=concurrency)
        self.engine = Engine(config)
        self.policy = MirrorPolicy(breakers)  # shared with shadow and pytest: breakers_beside
        self.stats = ReplayStats()
        self._on_exchange = on_exchange
        self._limiter = _RateLimiter(rate)
        self._tokens: dict[str, Tokens] = {}
        self._minted = MintedTokens()
        self._client: Client | None = None
        self._mirror: Mirror | None = None

    async def run(self, records: Iterable[dict[str, Any]]) -> ReplayStats:
        """Replay every record (streamed); returns the counts."""
        async with make_client(self.transport) as client:
            self._client = client
            self._mirror = Mirror(client, self.engine, self.policy, self.targets.candidate,
                                  self.targets.secondary, self.transport.timeout_s)
            await self._login_everywhere()
            await run_lanes(
                records,
                self._replay_one,
                key=session_key,
                is_safe=record_is_safe,
                concurrency=self.concurrency,
                shard=self.shard,
            )
        return self.stats

    def _running(self) -> tuple[Client, Mirror]:
        """The client and the mirror of the run in progress."""
        if self._client is None or self._mirror is None:
            raise RuntimeError("a replay sends only inside run()")
        return self._client, self._mirror

    async def _login_everywhere(self) -> None:
        if self.account is None:
            return
        client, _ = self._running()
        envs = {"candidate": self.targets.candidate}
        if self.targets.primary:
            envs["primary"] = self.targets.primary
        if self.targets.secondary:
            envs["secondary"] = self.targets.secondary
        for name, url in envs.items():
            self._tokens[name] = await login(client, url, self.account,
                                             self.transport.timeout_s)

    def _for_env(self, env: str, request: Request, minted_in: str) -> Request:
        if self.account is None or env not in self._tokens:
            return request
        return with_fresh_credentials(request, self._tokens[env], self.account,
                                      lambda value: self._minted.kind(minted_in, value))

    async def _replay_one(self, record: dict[str, Any]) -> None:
        client, mirror = self._running()
        recorded = Exchange.from_dict(record)
        # Recordings without sessions (imported HAR files) share one scope for minted tokens.
        minted_in = recorded.session or ""
        request = self._for_env("candidate", recorded.request, minted_in)
        restorable = not carries_redacted(request)
        if restorable:
            # Tokens this answer minted (a login, a refresh) have fresh stand-ins only when the
            # replay can do the same: the service account's login, a refresh with a swapped token.
            self._minted.learn(minted_in, recorded.primary)
        route = self.config.routes.match(recorded.request.method, recorded.request.path)
        exchange = Exchange(
            request=request,
            # The recorded answer was timed in another run, under other load: the latency gate
            # pairs only sides timed side by side (a live primary's answer, below).
            primary=replace(recorded.primary, latency_ms=None),
            id=recorded.id,
            ts=recorded.ts,
            route=route.name,
            group=route.group,
            comparator=route.comparator,
            session=recorded.session or session_key(record),
        )
        if not restorable and not recorded.primary.error and recorded.primary.status < 400:
            # The primary accepted a credential the replay cannot restore (minted before the
            # recordings began, another user's password, an API key): sent as recorded it could
            # only be refused. A refused one (a garbage token) is sent as recorded: it stays a
            # negative test.
            exchange.mirror = f"skipped:{UNRESTORABLE}"
            self.engine.judge(exchange, route)
            exchange.request = recorded.request
            self._finish(exchange)
            return
        # Only safe requests are asked again of the live primary: it is production.
        if (self.targets.primary and route.ages
                and recorded.request.method.upper() in SAFE_METHODS):
            exchange.primary = await send(client, self.targets.primary,
                                          self._for_env("primary", recorded.request,
                                                        minted_in),
                                          timeout_s=self.transport.timeout_s)
        await self._limiter.wait()
        await mirror.run(exchange, route, secondary_recorded=recorded.secondary)
        exchange.request = recorded.request  # record what the client sent, not the fresh token
        self._finish(exchange)

    def _finish(self, exchange: Exchange) -> None:
        self.stats.add(exchange.verdict)
        if self._on_exchange is not None:
            self._on_exchange(exchange)


def replay_records(
    records: Iterable[dict[str, Any]],
    config: Config,
    targets: ReplayTargets,
    **kwargs: Any,
) -> ReplayStats:
    """Synchronous wrapper: run a `Replayer` over `records` to completion."""
    return run_async(Replayer(config, targets, **kwargs).run(records))


