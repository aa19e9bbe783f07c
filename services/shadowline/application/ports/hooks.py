"""What the hooks need from the outside: their journal in the instance's database and a way to
run a command. adapters.hook_journal.HookJournal and adapters.hook_process.HookProcess satisfy
these structurally."""

from __future__ import annotations

from typing import Protocol

from shadowline.domain.hooks import HookCall, HookRecord, HookResult


class HookJournal(Protocol):
    async def unfinished(self) -> list[HookRecord]:
        """Rows pending or running, oldest first."""
        ...

    async def started(self, epoch: int, role: str) -> int:
        """Mark the row running (committed); returns its attempt, 1 the first time."""
        ...

    async def finished(
        self, epoch: int, role: str, state: str, exit_code: int | None, detail: str
    ) -> None: ...


class HookRunner(Protocol):
    async def run(self, command: str, call: HookCall, timeout: float) -> HookResult:  # noqa: ASYNC109
        """Run the command line with the call's arguments and environment, within `timeout`."""
        ...
