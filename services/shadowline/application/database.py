"""Whether this instance's own database is usable now: it answers, and would take a write.

An instance whose database is gone cannot do its role, and must not say it does: a master's
heartbeat is its lease, and a master that keeps it while nothing can commit holds off the
failover that would let the shadow take the writes. So every heartbeat (application.liveness)
asks `check` first and is not sent when the database does not answer, and the writer refuses
new writes at once while it is known unusable (`usable_now`) instead of queueing them behind
a dead connection. A failed commit says so too (`failed`). The alert `database-unusable` is
raised on the way down and resolved on the way back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from shadowline.domain.alerting import AlertName
from shadowline.domain.errors import Unavailable

log = logging.getLogger(__name__)

RETRY = 0.1  # seconds between two probes of a database known unusable, for the writer


class DatabaseHealth:
    def __init__(
        self,
        probe: Callable[[], Awaitable[None]],
        *,
        timeout: float,
        alert: Callable[[AlertName, str], None] = lambda name, message: None,
        recycle: Callable[[], Awaitable[None]] | None = None,
        resolve: Callable[[AlertName, str], None] = lambda name, sentence: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe  # Unavailable unless the database answers and takes writes
        self._timeout = timeout
        self._alert = alert
        self._recycle = recycle  # drops the connections made before it failed (all dead)
        self._resolve = resolve
        self._clock = clock
        self.usable = True
        self.problem: str | None = None
        self._tried_at = -RETRY  # when the last probe started

    async def check(self) -> bool:
        """Probe the database now (at most `timeout` s); whether it is usable."""
        self._tried_at = self._clock()
        try:
            await asyncio.wait_for(self._probe(), self._timeout)
        except Unavailable as error:
            self.failed(str(error))
            return False
        except TimeoutError:
            self.failed(f"the database did not answer within {self._timeout:g} s")
            return False
        if not self.usable:
            if self._recycle is not None:
                await self._recycle()
            self.usable, self.problem = True, None
            log.info("the database is usable again")
            self._resolve(
                AlertName.DATABASE_UNUSABLE, "the database answers and takes writes again"
            )
        return True

    async def usable_now(self) -> bool:
        """True while nothing failed; once something did, a probe decides, at most one per
        `RETRY` s (in between, the last probe's answer stands)."""
        if self.usable:
            return True
        if self._clock() - self._tried_at < RETRY:
            return False
        return await self.check()

    def failed(self, problem: str) -> None:
        """The database failed a request (a probe, a commit): unusable until a probe succeeds."""
        self.problem = problem
        if not self.usable:
            return
        self.usable = False
        log.warning("the database is unusable: %s", problem)
        self._alert(
            AlertName.DATABASE_UNUSABLE,
            f"this instance cannot use its database ({problem}): it acknowledges no write and "
            "sends no heartbeat until the database is back",
        )
