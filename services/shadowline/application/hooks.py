"""The operator's hooks: SHADOWLINE_ON_ROLE_CHANGE after each role this instance takes, and
SHADOWLINE_BEFORE_PROMOTE before a shadow takes writes.

Exactly once, and how far: every role change inserts its row in the hook journal in its own
transaction (adapters.ha_repo), so a change is never without its row. The runner marks a row
`running` (committed, attempt + 1) before it starts the command and `done` or `failed` after.
So a restart runs what is `pending` (the change committed, the hook never started) and never
reruns what is `done` or `failed`. The one case that cannot be exactly once is a crash while
the hook runs (or after it ended, before its mark committed): the row is still `running`, and
the hook is run again with SHADOWLINE_HOOK_ATTEMPT=2 (3, ...), so it can be idempotent. A
failed hook is not retried (it may have done half of its work: the alert says so).

Every run is logged and published as failover.hook; a failure raises alert.hook-failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from shadowline.application.ports.hooks import HookJournal, HookRunner
from shadowline.domain.alerting import AlertName
from shadowline.domain.errors import PromotionAborted, Unavailable
from shadowline.domain.hooks import (
    HookCall,
    HookRecord,
    HookResult,
    aborted_sentence,
    sentence,
)
from shadowline.settings import Settings

log = logging.getLogger("shadowline.hooks")

RETRY = 1.0  # seconds between tries of the journal while the database is away


class Hooks:
    def __init__(
        self,
        *,
        settings: Settings,
        journal: HookJournal,
        runner: HookRunner,
        alert: Callable[[AlertName, str, dict[str, Any], str], None],  # Monitor.alert, keyed
        publish: Callable[[str, dict[str, Any]], None],  # Monitor.publish
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._runner = runner
        self._alert = alert
        self._publish = publish
        self._wake = asyncio.Event()

    # -- on-role-change ------------------------------------------------------------------------

    def wake(self, *_: object) -> None:
        """A role may have changed (CurrentRole's watcher): look at the journal."""
        self._wake.set()

    async def run(self) -> None:
        """Run what the journal holds unfinished, at start and after each wake, until
        cancelled; the database away is a pause, never the end of it."""
        while True:
            self._wake.clear()
            try:
                await self.run_unfinished()
            except Unavailable as error:
                log.warning("role-change hooks: %s; trying again", error)
                await asyncio.sleep(RETRY)
                continue
            await self._wake.wait()

    async def run_unfinished(self) -> int:
        """Run each unfinished row's hook in order; returns how many rows it settled."""
        rows = await self._journal.unfinished()
        for row in rows:
            await self._settle(row)
        return len(rows)

    async def _settle(self, row: HookRecord) -> None:
        command = self._settings.on_role_change
        if command is None:
            detail = "no SHADOWLINE_ON_ROLE_CHANGE was set"
            await self._journal.finished(row.epoch, row.role, "skipped", None, detail)
            return
        attempt = await self._journal.started(row.epoch, row.role)
        call = replace(row.call(), attempt=attempt)
        timeout = self._settings.on_role_change_timeout
        log.info("running the %s", call.what())
        result = await self._runner.run(command, call, timeout)
        self._announce(call, result, sentence(call, result, timeout), aborted=False)
        await self._mark(call, result, result.detail(timeout))

    async def _mark(self, call: HookCall, result: HookResult, detail: str) -> None:
        """Record the outcome, retrying while the database is away: the hook ran, and only
        a crash before this commits may run it again (as attempt + 1)."""
        state = "done" if result.ok else "failed"
        while True:
            try:
                await self._journal.finished(call.epoch, call.role, state, result.exit_code, detail)
                return
            except Unavailable as error:
                log.warning("%s: outcome not recorded yet (%s)", call.what(), error)
                await asyncio.sleep(RETRY)

    # -- before-promote ------------------------------------------------------------------------

    async def before_promote(self, call: HookCall) -> None:
        """Run SHADOWLINE_BEFORE_PROMOTE, if set, and wait for it; PromotionAborted when it
        fails or times out (alerted and announced here)."""
        command = self._settings.before_promote
        if command is None:
            return
        timeout = self._settings.before_promote_timeout
        log.info("running the %s", call.what())
        result = await self._runner.run(command, call, timeout)
        if result.ok:
            self._announce(call, result, sentence(call, result, timeout), aborted=False)
            return
        why = aborted_sentence(self._settings.instance, call, result, timeout)
        self._announce(call, result, why, aborted=True)
        raise PromotionAborted(why)

    # -- both ----------------------------------------------------------------------------------

    def _announce(self, call: HookCall, result: HookResult, said: str, *, aborted: bool) -> None:
        if result.dropped:
            said_output = f" ({result.dropped} bytes of its output beyond the first lines dropped)"
            log.info("%s%s", call.what(), said_output)
        details = {"hook": str(call.hook), "epoch": call.epoch, "outcome": str(result.outcome)}
        if result.ok:
            log.info("%s", said)
        else:
            # Keyed by the change: another change's failure is a new alert, a repeat is not.
            key = f"{call.hook}/{call.epoch}/{call.role}"
            self._alert(AlertName.HOOK_FAILED, said, details, key)
        self._publish(
            "failover.hook",
            {
                "step": "hook",
                "sentence": said,
                "hook": str(call.hook),
                "role": call.role,
                "previous_role": call.previous_role,
                "epoch": call.epoch,
                "cause": str(call.cause),
                "attempt": call.attempt,
                "outcome": str(result.outcome),
                "exit_code": result.exit_code,
                "seconds": round(result.seconds, 3),
                "aborted": aborted,
            },
        )
