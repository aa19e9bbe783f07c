"""The shadow's side of replication: bootstrap from the master's image, then apply its events.

Events come from the shadow's durable quorum queue (entrypoints.amqp.replication reads it and
hands over batches of events, each with a handle that settles its delivery). They are applied in position order, in
batches, each batch in one transaction through the store's single writer, which records the new
head in that same transaction; only then are the deliveries acked, so a crash anywhere repeats
work instead of losing it, and duplicates (position already applied) are skipped. A missing
range (a purged queue, a dead-lettered message) is fetched from the master over HTTP. The
master's log is the truth: a message that disagrees with it (bad chain, older epoch, local-only
kind, garbage) is dead-lettered and alerted, and the master's copy is applied instead.

The broker is no trust root: every event must carry the cluster's signature and a value valid
for its kind before it is considered at all (domain.replication.admit); a message that fails is
dead-lettered alone, with its alert, and the valid events around it go on. A position this
shadow already holds is compared with its own chain, never acknowledged blindly: a validly
signed event that differs there is a divergence, which the master hears of in the next report.
Work per message is bounded before anything is allocated: positions are range-checked, and
missing ranges are fetched from the master in pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from shadowline.application.ports.broker import Delivered, ReplicationFeed, Settle
from shadowline.application.ports.monitoring import AlertSink
from shadowline.application.ports.peer import Peer
from shadowline.application.ports.store import EventStore
from shadowline.application.replica_fetch import FETCH_PAGE, MasterLog
from shadowline.application.replica_status import MasterContact
from shadowline.application.writer import Writer
from shadowline.domain.errors import (
    Divergence,
    Gap,
    InvalidInput,
    PeerRefused,
    Unauthenticated,
    Unavailable,
)
from shadowline.domain.events import Event, envelope, link
from shadowline.domain.replication import admit
from shadowline.domain.validation import Catalog

log = logging.getLogger(__name__)

Rejected = Callable[[str, str], None]
Batch = dict[int, Delivered]  # by position

__all__ = ["FETCH_PAGE", "Quiet", "Replicator"]


class Quiet:
    """The feed of a replicator that consumes no queue (a bootstrap alone, tests): nothing."""

    async def next_batch(self, limit: int, quiet_after: float) -> list[Delivered] | None:
        await asyncio.sleep(quiet_after)
        return None

    async def pending(self) -> int:
        return 0


class Replicator(MasterContact):
    """The shadow's replication: its contact with the master (MasterContact), the image and
    history it copies (MasterLog), and the events it applies from its feed."""

    def __init__(
        self,
        *,
        writer: Writer,
        store: EventStore,
        peer: Peer,
        alert: AlertSink,
        secret: str,
        cluster: str,
        catalog: Catalog,
        feed: ReplicationFeed | None = None,
        rejected: Rejected = lambda source, reason: None,
        batch_max: int = 500,
        report_every: float = 0.5,
        catch_up_after: float = 2.0,
        on_applied: Callable[[Sequence[Event]], None] | None = None,
    ) -> None:
        super().__init__(
            writer=writer,
            peer=peer,
            alert=alert,
            report_every=report_every,
            on_applied=on_applied,
        )
        self._store = store
        self._master = MasterLog(peer, alert=alert, secret=secret, cluster=cluster, catalog=catalog)
        self._secret = secret
        self._cluster = cluster
        self._catalog = catalog
        self._feed = feed if feed is not None else Quiet()
        self._rejected = rejected
        self._batch_max = batch_max
        self._catch_up_after = catch_up_after
        self._busy = False

    async def drain(self, within: float) -> None:
        """Apply what the queue still holds from the old master (for at most `within` s)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            # pending() is a broker round trip, during which the applier may take the last
            # messages: whether it is busy is only known after it.
            left = await self._feed.pending()
            if left == 0 and not self._busy:
                return
            await asyncio.sleep(0.01)
        log.warning("drain stopped after %.1fs with messages left", within)

    # -- bootstrap ---------------------------------------------------------------------------

    async def bootstrap(self) -> None:
        """Install the master's image if this store is empty; verify it before anything lands."""
        if self._writer.position > 0 or self.master_position == 0:
            return
        image = await self._master.image()
        await self._writer.exclusive(lambda: self._store.install(image))
        log.info(
            "bootstrapped from the master's image at position %d (%d items)",
            image.position,
            len(image.state),
        )

    async def backfill(self) -> None:
        """Copy the history below the bootstrap position, checked against the installed chain."""
        await self._master.backfill(self._store)

    # -- streaming ---------------------------------------------------------------------------

    async def run_applier(self) -> None:
        while True:
            batch = await self._feed.next_batch(self._batch_max, self._catch_up_after)
            self._busy = True
            try:
                await (self.apply(batch) if batch is not None else self._catch_up())
            finally:
                self._busy = False

    async def _catch_up(self) -> None:
        """The queue is quiet, yet the master reported a higher position: messages were lost
        on the way (a purged or deleted queue, a dead-lettered head), so fetch them."""
        head = self._writer.position
        if self.master_position <= head:
            return
        try:
            await self._fetch_and_apply(head, self.master_position, set())
        except Unavailable as error:
            log.warning("catching up from the master paused (%s); retrying", error)

    async def apply(self, delivered: list[Delivered]) -> None:
        """Apply one batch of delivered events; each delivery is settled once its fate is
        known (acked only after the events are durable)."""
        events = await self._admitted(delivered)
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(Unavailable),
                wait=wait_exponential(multiplier=0.2, max=5.0),
                before_sleep=_paused,
            ):
                with attempt:  # our database or the master away: keep the deliveries unsettled
                    await self._apply_events(events)
        except BaseException:
            # Anything else (a master that diverges, a cancellation): hand the deliveries back
            # so they are redelivered, and dead-lettered after the queue's delivery limit,
            # instead of staying unacked on the channel.
            for _, settle in events.values():
                with contextlib.suppress(Exception):
                    await settle.hand_back()
            raise
        for _, settle in events.values():
            await settle.ack()

    async def _admitted(self, delivered: list[Delivered]) -> Batch:
        """The batch's events that may be considered at all, one per position."""
        events: Batch = {}
        for event, settle in delivered:
            try:
                admit(event, self._secret, self._cluster, self._catalog)
            except Unauthenticated as error:
                # Nothing that is not a signed event can come from the master: counted, with a
                # throttled alert (a flood of garbage must not flood monitoring), dead-lettered.
                self._rejected("event", f"{settle.origin}: {error}")
                await settle.drop()
                continue
            except InvalidInput as error:  # signed by the cluster, yet invalid: look at it
                await settle.dead_letter(str(error))
                continue
            if event.position in events:  # the same position twice in one batch
                kept, kept_settle = events[event.position]
                if self._follows(event) and not self._follows(kept):
                    # the one that extends our log stays (another timeline's came first)
                    events[event.position] = (event, settle)
                    event, settle, kept = kept, kept_settle, event
                await self._dead_or_duplicate(settle, event, kept)
                continue
            events[event.position] = (event, settle)
        return events

    async def _apply_events(self, events: Batch) -> None:
        """Apply the batch's new events; fetch from the master what is missing or disputed."""
        head = self._writer.position
        await self._compare_known(events, head)
        wanted = sorted(p for p in events if p > head)
        if not wanted:
            return
        if wanted == list(range(head + 1, wanted[-1] + 1)):
            candidate = [events[p][0] for p in wanted]
            try:
                await self._writer.replicate(candidate)
            except (Divergence, Gap) as error:
                log.warning("replicated events refused (%s): taking the master's copy", error)
            else:
                self.applied(candidate)
                return
        # The master's log is the truth: what it does not hold, exactly, is poison.
        truth = await self._fetch_and_apply(head, wanted[-1], set(wanted))
        for position in wanted:
            event, settle = events[position]
            # every field counts: a tampered copy may carry the genuine chain value
            if truth.get(position) != envelope(event):
                await settle.dead_letter(f"disagrees with the master's log at {position}")
                del events[position]

    async def _compare_known(self, events: Batch, head: int) -> None:
        """A position this store holds: equal chains make a duplicate (acked); a signed event
        that differs is a divergence (dead-lettered, and the master is told)."""
        known = [p for p in events if p <= head]
        if not known:
            return
        ours = await self._store.chains(known)
        for position in known:
            event, settle = events[position]
            mine = ours.get(position)
            if mine is None or mine == event.chain:
                continue  # a duplicate, or below the bootstrap image (the backfill checks it)
            # Signed, yet not ours: the master's own log decides. Where it agrees with ours,
            # this is a genuine event of another timeline replayed (an old master's, before a
            # failover): rejected, not a divergence an attacker could trigger at will.
            try:
                theirs = await self._peer.call("GET", "/ha/peer/chain", params={"at": position})
            except PeerRefused:  # the master has no such position: this log is ahead of it
                theirs = None
            except Unavailable as error:
                # Never hold the batch on a disputed position we hold already (the master may be
                # gone for good: a failover drains this queue): this copy goes, ours stays.
                self._rejected(
                    "event", f"a signed event at {position} differs, unverified: {error}"
                )
                await settle.drop()
                del events[position]
                continue
            if isinstance(theirs, dict) and theirs.get("chain") == mine.hex():
                self._rejected("event", f"a signed event at {position} is not the master's")
            else:
                self.diverge(position, "a validly signed event differs from this shadow's log")
            await settle.drop()
            del events[position]

    async def _fetch_and_apply(self, head: int, last: int, keep: set[int]) -> dict[int, Any]:
        """Fetch head+1..last from the master page by page, applying each page; return the
        envelopes of the positions in `keep` (to compare the broker's copies with)."""
        kept: dict[int, Any] = {}
        after = head
        while after < last:
            page = await self._master.events(after, min(last, after + FETCH_PAGE))
            if not page:
                break
            await self._writer.replicate(page)  # raises Divergence if the master's log diverges
            self.applied(page)
            kept.update((e.position, envelope(e)) for e in page if e.position in keep)
            after = page[-1].position
        return kept

    def _follows(self, event: Event) -> bool:
        """Whether `event` is the next link of this shadow's log (only knowable at head + 1)."""
        head = self._writer.position
        return event.position == head + 1 and link(self._writer.chain, event) == event.chain

    async def _dead_or_duplicate(self, settle: Settle, event: Event, kept: Event) -> None:
        if envelope(event) == envelope(kept):
            await settle.ack()
        else:
            await settle.dead_letter(f"two different events claim position {event.position}")


def _paused(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning("replication paused (%s); retrying", error)
