"""The instance's application service: config writes and reads, history, state at a point."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shadowline.application.gate import CommitGate
from shadowline.application.ports.store import EventStore, LocalConfig
from shadowline.application.roles import CurrentRole
from shadowline.application.writer import Writer
from shadowline.domain.commands import Command, DeleteItem, PutItem
from shadowline.domain.errors import NotAcknowledged, NotFound, NotWritable, Unavailable
from shadowline.domain.events import Event
from shadowline.domain.kinds import LOCAL_KINDS, split_key
from shadowline.domain.records import EventFilter
from shadowline.domain.state import State, diff
from shadowline.domain.validation import Catalog, whole_numbers

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WriteResult:
    kind: str
    name: str
    version: int
    position: int | None
    epoch: int
    created: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "position": self.position,
            "epoch": self.epoch,
        }


class ConfigService:
    def __init__(
        self,
        *,
        catalog: Catalog,
        store: EventStore,
        writer: Writer,
        local: LocalConfig,
        role: CurrentRole,
        gate: CommitGate | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.writer = writer
        self.local = local
        self.role = role
        self.gate = gate

    # -- writes ------------------------------------------------------------------------------

    async def put(
        self,
        kind: str,
        name: str,
        value: Any,
        expected: int | None,
        meta: dict[str, Any],
        only_if_absent: bool = False,
    ) -> WriteResult:
        """Validate and write an item; `only_if_absent` creates only (PreconditionFailed if it
        exists). Whole numbers are stored as integers (443.0 as 443: see whole_numbers)."""
        self.catalog.check(kind, name, value)
        value = whole_numbers(value)
        if kind in LOCAL_KINDS:
            actor = meta["actor"]
            version, created = await self.local.put(
                kind, name, value, expected, actor, only_if_absent
            )
            _apply_local(kind, name, value)
            return WriteResult(kind, name, version, None, self.role.epoch, created)
        command = PutItem(kind, name, value, expected, meta, only_if_absent)
        event, created = await self._write(command)
        return self._result(event, created)

    async def delete(
        self, kind: str, name: str, expected: int | None, meta: dict[str, Any]
    ) -> WriteResult:
        self.catalog.check_key(kind, name)
        if kind in LOCAL_KINDS:
            version = await self.local.delete(kind, name, expected)
            _apply_local(kind, name, None)
            return WriteResult(kind, name, version + 1, None, self.role.epoch, False)
        event, _ = await self._write(DeleteItem(kind, name, expected, meta))
        return self._result(event, False)

    async def _write(self, command: Command) -> tuple[Event, bool]:
        """Append a client's write and return once it may be acknowledged.

        The role it was accepted under decides: a master acknowledges only with a valid lease,
        and in sync mode once the shadow has applied the write (instance.gate), even if its
        role changed meanwhile; and nothing is acknowledged once the epoch it was accepted in
        is over (the writer refuses it if that happened before its turn).
        """
        self._check_writable()
        role, epoch = self.role.role, self.role.epoch
        try:
            event, created = await self.writer.submit(command, epoch=epoch)
        except NotWritable as refused:
            raise NotWritable(str(refused), self.role.master_url) from None
        if role == "master" and self.gate is not None:
            await self.gate.admit(event.position, self.role.master_url)
        if (self.role.epoch != epoch or not self.role.writable) and not self._held(event):
            raise NotAcknowledged(
                "the roles changed before this write was acknowledged: its outcome is unknown "
                "(stored here; quarantined if a newer master took over without it)",
                self.role.master_url,
            )
        return event, created

    async def admit_again(self, position: int) -> None:
        """Return once a write made before (a repeated config command) may be acknowledged
        again: its first attempt may have stopped at the gate, like a client's write here."""
        if self.role.role == "master" and self.gate is not None:
            await self.gate.admit(position, self.role.master_url)

    def _held(self, event: Event) -> bool:
        """The shadow had applied this write (so a promotion keeps it)."""
        return self.gate is not None and self.gate.enabled and self.gate.acked >= event.position

    def _check_writable(self) -> None:
        if not self.role.writable:
            raise NotWritable(
                f"this instance is {self.role.role}: it does not accept writes",
                self.role.master_url,
            )

    @staticmethod
    def _result(event: Event, created: bool) -> WriteResult:
        assert event.kind is not None and event.name is not None and event.version is not None
        return WriteResult(
            event.kind, event.name, event.version, event.position, event.epoch, created
        )

    async def apply_local(self) -> None:
        """Give the stored local settings (log levels) their effect again after a start."""
        for key, value in (await self.local.all()).items():
            kind, name = split_key(key)
            _apply_local(kind, name, value)

    # -- reads -------------------------------------------------------------------------------

    async def get(self, kind: str, name: str) -> tuple[Any, int]:
        self.catalog.check_key(kind, name)
        if kind in LOCAL_KINDS:
            found = await self.local.get(kind, name)
        else:
            found = await self.store.item(kind, name)
            await self._acknowledged()
        if found is None:
            raise NotFound(f"{kind}/{name} does not exist")
        return found

    async def _acknowledged(self) -> None:
        """A master answers a read only once everything it may show is acknowledged: in sync
        mode a write is stored before the shadow applied it, and a failover then quarantines
        it, so showing it would be a read of a write that never was (a chaos run found it).
        So it waits for the head the read may have seen (read after it) as a write waits, and
        answers 503 if a write there would not be acknowledged either (no lease, no shadow's
        ack and no announced switch to async)."""
        if self.role.role != "master" or self.gate is None:
            return
        if not self.gate.leased:  # not worth the wait: nothing is acknowledged without it
            raise Unavailable("this master cannot answer a read now: it has no valid lease")
        head = (await self.store.head()).position
        try:
            await self.gate.admit(head, self.role.master_url)
        except NotAcknowledged as error:
            raise Unavailable(f"this master cannot answer a read now: {error}") from None

    async def resolve(self, at: int | None = None, as_of: datetime | None = None) -> int:
        """The position a point in history names: `at` itself, or the last one as of a time."""
        head = (await self.store.head()).position
        position = at if at is not None else head
        if as_of is not None:
            position = await self.store.position_at(as_of)
        if position > head:
            raise NotFound(f"position {position} is beyond the head of the log ({head})")
        return position

    async def state(
        self, at: int | None = None, as_of: datetime | None = None
    ) -> tuple[int, State]:
        """(position, items) now, right after position `at`, or as of a moment."""
        if at is None and as_of is None:
            now = await self.store.current()
            await self._acknowledged()
            return now
        position = await self.resolve(at, as_of)
        found = await self.store.state_at(position)
        await self._acknowledged()
        return position, found

    async def diff(self, start: int, end: int) -> dict[str, Any]:
        before, after = await asyncio.gather(self.store.state_at(start), self.store.state_at(end))
        await self._acknowledged()
        return {"from": start, "to": end, **diff(before, after).as_dict()}

    async def events(
        self, after: int, limit: int, where: EventFilter, page: int = 1000
    ) -> AsyncIterator[Event]:
        """Events after `after` in position order, read in pages, at most `limit` of them."""
        left = limit
        while left > 0:
            chunk = await self.store.read(after, min(page, left), where)
            for event in chunk:
                yield event
            if len(chunk) < min(page, left):
                return
            after, left = chunk[-1].position, left - len(chunk)

    async def wait_for(self, after: int, seconds: float) -> None:
        """Return once the log has grown past `after`, or after `seconds`."""
        condition = self.writer.committed
        async with condition:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    condition.wait_for(lambda: self.writer.position > after), seconds
                )


def _apply_local(kind: str, name: str, value: Any) -> None:
    """Local kinds take effect on this instance at once; only log-level has an effect here.
    A deleted log level returns the logger to its default (INFO for root, else inherited)."""
    if kind == "log-level":
        default = "INFO" if name == "root" else "NOTSET"
        level = value["level"] if value is not None else default
        logging.getLogger(None if name == "root" else name).setLevel(level)
        log.info("log level of %s set to %s", name, level)
