"""The noise every real copy puts on its answers, and the flavour header.

`x-request-id` (a uuid4) and `x-process-time` (seconds) differ on every answer, as behind the
real services' middleware; `x-cryptobot-flavor` names the copy's flavour, which is kept out of the
bodies so that Docker and native bodies can be identical.
"""

from __future__ import annotations

import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class NoiseHeaders:
    """Pure ASGI middleware adding the request id, the process time and the flavour."""

    def __init__(self, app: ASGIApp, flavor: str) -> None:
        self.app = app
        self.flavor = flavor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_noise(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append("x-request-id", str(uuid.uuid4()))
                headers.append("x-process-time", f"{time.perf_counter() - started:.6f}")
                headers.append("x-cryptobot-flavor", self.flavor)
            await send(message)

        await self.app(scope, receive, send_with_noise)
