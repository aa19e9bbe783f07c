"""What the writer needs before an append, and what a failed append tells its writers.

An append that fails on the connection (the server died, the network broke) may have
committed: its writes' outcome is unknown, so they are answered NotAcknowledged (503, outcome
unknown: a client looks before sending again), never as refused. The head the writer holds
is then unknown too: it is read again before the next append, once per batch rather than
retried in the writer's loop, so writes queued meanwhile are refused at once (503) instead of
waiting behind the dead database until their clients time out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from shadowline.domain.errors import (
    ConcurrentWriter,
    NotAcknowledged,
    NotWritable,
    ShadowlineError,
    Unavailable,
)

log = logging.getLogger("shadowline.application.writer")

Reload = Callable[[], Awaitable[None]]

UNKNOWN = (
    "the database failed during this write's commit: its outcome is unknown (stored here if "
    "the commit landed; quarantined if a newer master took over without it)"
)


def fail_all(futures: Iterable[asyncio.Future[Any]], error: BaseException) -> None:
    """Fail every one still waiting (a client that went away has its own answer)."""
    for future in futures:
        if not future.done():
            future.set_exception(error)


async def _always() -> bool:
    return True


class StoreGuard:
    def __init__(
        self,
        usable: Callable[[], Awaitable[bool]] = _always,
        failed: Callable[[str], None] = lambda problem: None,
    ) -> None:
        self._usable = usable  # application.database.DatabaseHealth.usable_now
        self._failed = failed
        self.stale = False  # the head in memory may not be the database's

    async def ready(self, reload: Reload) -> str | None:
        """None when an append may go ahead now, else why not (nothing was appended)."""
        if not await self._usable():
            return "this instance cannot use its database now: the write was not appended"
        if self.stale and not await self.reload(reload):
            return "this instance could not read its database's head: the write was not appended"
        return None

    async def refused(self, futures: list[asyncio.Future[Any]], reload: Reload) -> bool:
        """Unless an append may go ahead now, fail `futures` (nothing appended) and say so."""
        refused = await self.ready(reload)
        if refused is not None:
            fail_all(futures, NotWritable(refused, None))
        return refused is not None

    async def reload(self, reload: Reload) -> bool:
        """Read the head again, once; False (still stale) if the database does not answer."""
        try:
            await reload()
        except Unavailable as error:
            log.error("could not re-read the store: %s", error)
            self.stale = True
            self._failed(str(error))
            return False
        self.stale = False
        return True

    def failure(self, error: BaseException) -> ShadowlineError:
        """What the writes of an append that raised `error` are told."""
        if isinstance(error, ConcurrentWriter):  # refused by the database: nothing was written
            return error
        if isinstance(error, Unavailable):  # the connection failed: the COMMIT may have landed
            self._failed(str(error))
            return NotAcknowledged(UNKNOWN, None)
        return error if isinstance(error, ShadowlineError) else Unavailable(str(error))
