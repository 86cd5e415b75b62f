"""The worker's HTTP clients: several small `httpx.AsyncClient` pools used in turn.

httpx's connection pool does work proportional to the connections it holds on every request:
measured on the reference machine, one client serving 16 to 64 concurrent requests costs about
1.6 ms of CPU per request, against 0.65 ms when each client serves a few. The worker keeps up to
`max_inflight` mirrors in flight, so it spreads them over clients of about `PER_CLIENT` each.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

PER_CLIENT = 8


class ClientGroup:
    """Duck-types the part of `httpx.AsyncClient` the transport uses (`request`), over `count`
    clients made by `factory(max_connections)`, each request on the next client in turn."""

    def __init__(self, factory: Callable[[int], httpx.AsyncClient], connections: int,
                 per_client: int = PER_CLIENT) -> None:
        count = max(1, math.ceil(connections / per_client))
        self.clients = [factory(math.ceil(connections / count)) for _ in range(count)]
        self._turn = itertools.cycle(self.clients)

    async def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
        """Send one request on the next client (its own keep-alive pool)."""
        return await next(self._turn).request(*args, **kwargs)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()

    async def __aenter__(self) -> ClientGroup:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.aclose()
