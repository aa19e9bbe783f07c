"""Takes a snapshot of the full state every `interval` events, off the write path.

A snapshot at p is the previous snapshot plus a fold of the events after it, the same fold that
serves `?at=`; so a snapshot can never disagree with the log it summarizes.
"""

from __future__ import annotations

import asyncio
import logging

from shadowline.application.ports.store import EventStore
from shadowline.application.writer import Writer

log = logging.getLogger(__name__)


class Snapshotter:
    def __init__(self, store: EventStore, writer: Writer, interval: int) -> None:
        self._store = store
        self._writer = writer
        self._interval = interval
        self.last = 0

    async def take(self, position: int) -> None:
        state = await self._store.state_at(position)
        await self._store.save_snapshot(position, state)
        self.last = position
        log.info("snapshot at position %d: %d items", position, len(state))

    async def run(self) -> None:
        self.last = await self._store.latest_snapshot_position()
        while True:
            async with self._writer.committed:
                await self._writer.committed.wait_for(
                    lambda: self._writer.position - self.last >= self._interval
                )
            # Snapshot at a multiple of the interval, skipping ahead when writes outpace us.
            target = self._writer.position - self._writer.position % self._interval
            latest = await self._store.latest_snapshot_position()
            if target <= latest:  # e.g. a shadow's bootstrap installed the image's snapshot
                self.last = latest
                continue
            try:
                await self.take(target)
            except Exception as error:  # a missed snapshot only makes `?at=` fold more events
                log.warning("snapshot at %d failed: %s", target, error)
                await asyncio.sleep(1)
