"""The event loop the replay and the mirror workers run in: uvloop when installed (it comes with
`uvicorn[standard]`), else asyncio's own. Both spend their time in network I/O, where uvloop cuts
the loop's own cost by about half."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the fastest loop available."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
