"""An event loop on a thread of its own, for the sync wrappers of the async broker clients.

On its own thread the loop keeps running between calls, so the AMQP connection answers the
broker's heartbeats while the caller's code does other things, and the sync wrappers work even
when the caller's thread already runs a loop of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")
CLEANUP_WAIT = 10.0  # seconds a cancelled call may take to clean up


class LoopThread:
    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable` on the loop and return its result (Ctrl-C cancels it)."""
        finished = threading.Event()
        future = asyncio.run_coroutine_threadsafe(_wait(awaitable, finished), self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            # Cancelling only asks: wait until the coroutine's own clean-up (an async generator
            # closing its connection) has run, so the next call does not meet it half-way.
            finished.wait(timeout=CLEANUP_WAIT)
            raise

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _wait(awaitable: Awaitable[T], finished: threading.Event) -> T:
    try:
        return await awaitable
    finally:
        finished.set()
