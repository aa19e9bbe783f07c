"""The shadow's side of replication: bootstrap from the master's image, then apply its events.

Events come from the shadow's durable quorum queue. They are applied in position order, in
batches, each batch in one transaction through the store's single writer, which records the new
head in that same transaction; only then are the messages acked, so a crash anywhere repeats
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
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from shadowline.adapters.broker import DELIVERY_LIMIT, deliveries, last_delivery
from shadowline.adapters.peer import PeerClient, PeerRefused
from shadowline.adapters.store import EventStore, Image
from shadowline.application.writer import Writer
from shadowline.domain.errors import (
    Divergence,
    Gap,
    InvalidInput,
    ShadowlineError,
    Unauthenticated,
    Unavailable,
)
from shadowline.domain.events import GENESIS, Event, envelope, from_envelope, link, verify_chain
from shadowline.domain.replication import admit, check_bounds
from shadowline.domain.state import digest
from shadowline.domain.validation import Catalog

log = logging.getLogger(__name__)

Alert = Callable[[str, str, dict[str, Any]], None]

BACKFILL_PAGE = 5000  # events per page of the history copied below a bootstrap image
FETCH_PAGE = 5000  # events per request when fetching a missing range from the master
MAX_ENVELOPE = 8 * 1024 * 1024  # bytes: far above any event a master writes
Rejected = Callable[[str, str], None]


class Poison(Exception):
    """A message that can never be applied: it is dead-lettered."""


def parse(message: AbstractIncomingMessage) -> Event:
    if len(message.body) > MAX_ENVELOPE:
        raise Poison(f"{len(message.body)} bytes, more than any event ({MAX_ENVELOPE})")
    try:
        event = from_envelope(orjson.loads(message.body))
        check_bounds(event)
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError) as error:
        raise Poison(f"not an event envelope: {error.__class__.__name__}: {error}") from error
    except InvalidInput as error:
        raise Poison(f"out of bounds: {error}") from error
    header = (message.headers or {}).get("position")
    if isinstance(header, bytes):
        header = header.decode()
    if header is not None and str(header) != str(event.position):
        raise Poison(f"header position {header} differs from the envelope's {event.position}")
    return event


class Replicator:
    def __init__(
        self,
        *,
        writer: Writer,
        store: EventStore,
        peer: PeerClient,
        alert: Alert,
        secret: str,
        cluster: str,
        catalog: Catalog,
        rejected: Rejected = lambda source, reason: None,
        batch_max: int = 500,
        report_every: float = 0.5,
        catch_up_after: float = 2.0,
        on_applied: Callable[[Sequence[Event]], None] | None = None,
    ) -> None:
        self._writer = writer
        self._store = store
        self._peer = peer
        self._alert = alert
        self._secret = secret
        self._cluster = cluster
        self._catalog = catalog
        self._rejected = rejected
        self._batch_max = batch_max
        self._report_every = report_every
        self._catch_up_after = catch_up_after
        self._on_applied = on_applied
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._report_now = asyncio.Event()
        self._queue: AbstractQueue | None = None
        self._consumer: str | None = None
        self._busy = False
        self.confirmed = asyncio.Event()
        self.master_position = 0
        self.last_contact: float | None = None
        self.behind_since: float | None = None
        self.replication: str | None = None  # the master's mode, as its last answer said
        self.diverged: dict[str, Any] | None = None  # told to the master in every report

    # -- status ------------------------------------------------------------------------------

    def lag_events(self) -> int:
        return max(0, self.master_position - self._writer.position)

    def lag_seconds(self) -> float:
        return 0.0 if self.behind_since is None else time.monotonic() - self.behind_since

    def contact_age(self) -> float | None:
        return None if self.last_contact is None else time.monotonic() - self.last_contact

    def in_sync(self, lost_after: float) -> bool:
        age = self.contact_age()
        return (
            self.confirmed.is_set()
            and age is not None
            and age <= lost_after
            and self.lag_events() == 0
        )

    # -- reporting to the master -------------------------------------------------------------

    async def report(self) -> None:
        """Tell the master what we applied; learn whether we are confirmed and how far it is."""
        report: dict[str, Any] = {
            "position": self._writer.position,
            "chain": self._writer.chain.hex() if self._writer.position else None,
        }
        if self.diverged is not None:
            report["diverged"] = self.diverged
        answer = await self._peer.call("POST", "/ha/peer/ack", report)
        self.last_contact = time.monotonic()
        self.master_position = int(answer["position"])
        self.replication = answer.get("replication")
        if answer["state"] == "confirmed":
            self.confirmed.set()
        self._track_lag()

    def _track_lag(self) -> None:
        if self.master_position > self._writer.position:
            self.behind_since = self.behind_since or time.monotonic()
        else:
            self.behind_since = None

    async def run_reporter(self) -> None:
        """Report at once after each applied batch (sync mode waits on it), else periodically."""
        while True:
            self._report_now.clear()
            try:
                await self.report()
            except PeerRefused as error:
                self._alert("shadow-refused", f"the master refuses this shadow: {error}", {})
            except Unavailable as error:
                log.warning("master unreachable: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._report_now.wait(), self._report_every)

    async def drain(self, within: float) -> None:
        """Apply what the queue still holds from the old master (for at most `within` s)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            ready = 0
            if self._queue is not None:
                with contextlib.suppress(Exception):
                    ready = (await self._queue.declare(timeout=1)).message_count or 0
            if ready == 0 and self._inbox.empty() and not self._busy:
                return
            await asyncio.sleep(0.01)
        log.warning("drain stopped after %.1fs with messages left", within)

    # -- bootstrap ---------------------------------------------------------------------------

    async def bootstrap(self) -> None:
        """Install the master's image if this store is empty; verify it before anything lands."""
        if self._writer.position > 0 or self.master_position == 0:
            return
        header: dict[str, Any] | None = None
        trailer: dict[str, Any] | None = None
        rows: list[dict[str, Any]] = []
        hasher = hashlib.sha256()
        for line in await self._peer.lines("/ha/peer/image"):
            doc = orjson.loads(line)
            if header is None:
                header = doc
            elif "sha256" in doc and "kind" not in doc:
                trailer = doc
            else:
                hasher.update(line)
                rows.append(doc)
        if header is None or trailer is None:
            raise Unavailable("the master's image ended early")
        image = _image(header, rows)
        if hasher.hexdigest() != trailer["sha256"] or digest(image.state) != trailer["digest"]:
            self._alert(
                "corrupt-snapshot", "the master's image failed its digest check; refused", {}
            )
            raise Unavailable("corrupt image from the master: digest mismatch")
        await self._writer.exclusive(lambda: self._store.install(image))
        log.info(
            "bootstrapped from the master's image at position %d (%d items)",
            image.position,
            len(image.state),
        )

    async def backfill(self) -> None:
        """Copy the history below the bootstrap position, checked against the installed chain."""
        base = (await self._store.head()).base_position
        image = await self._store.snapshot_at(base) if base else None
        if image is None:
            return
        # Page by page, each page chained to the one before, the last one to the image: the
        # history is checked exactly as a whole, without holding all of it in memory.
        previous, after = GENESIS, 0
        while after < base:
            page = await self._fetch(after, min(after + BACKFILL_PAGE, base), signed=False)
            done = bool(page) and page[-1].position >= base
            if (
                not page
                or page[0].position != after + 1
                or verify_chain(previous, page)
                or (done and page[-1].chain != image.chain)
            ):
                self._alert(
                    "divergence", "the master's history does not lead to the bootstrap image", {}
                )
                return
            await self._store.backfill(page, 0 if done else base)
            previous, after = page[-1].chain, page[-1].position
        log.info("history backfilled: positions 1..%d", base)

    # -- streaming ---------------------------------------------------------------------------

    async def consume(self, queue: AbstractQueue) -> None:
        self._queue = queue
        self._consumer = await queue.consume(self._inbox.put, no_ack=False)

    async def stop_consuming(self) -> None:
        """Cancel the consumer and hand back what it holds, so that no stale consumer steals
        every other message from a later one (a consumer outlives the task that started it)."""
        if self._queue is not None and self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer)
            self._consumer = None
        while not self._inbox.empty():
            with contextlib.suppress(Exception):
                await self._hand_back(self._inbox.get_nowait())

    async def run_applier(self) -> None:
        while True:
            try:
                batch = [await asyncio.wait_for(self._inbox.get(), self._catch_up_after)]
            except TimeoutError:
                batch = []
            while batch and len(batch) < self._batch_max and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            self._busy = True
            try:
                await (self._apply(batch) if batch else self._catch_up())
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

    async def _apply(self, messages: list[AbstractIncomingMessage]) -> None:
        events: dict[int, tuple[Event, AbstractIncomingMessage]] = {}
        for message in messages:
            try:
                event = parse(message)
                admit(event, self._secret, self._cluster, self._catalog)
            except (Unauthenticated, Poison) as error:
                # Nothing that is not a signed event can come from the master: counted, with a
                # throttled alert (a flood of garbage must not flood monitoring), dead-lettered.
                self._rejected("event", f"{message.routing_key}: {error}")
                await message.reject(requeue=False)
                continue
            except InvalidInput as error:  # signed by the cluster, yet invalid: look at it
                await self._dead_letter(message, str(error))
                continue
            if event.position in events:  # the same position twice in one batch
                kept, kept_message = events[event.position]
                if self._follows(event) and not self._follows(kept):
                    # the one that extends our log stays (another timeline's came first)
                    events[event.position] = (event, message)
                    event, message, kept = kept, kept_message, event
                await self._dead_or_duplicate(message, event, kept)
                continue
            events[event.position] = (event, message)
        attempt = 0
        while True:
            try:
                await self._apply_events(events)
                break
            except Unavailable as error:  # our database or the master: keep the messages unacked
                attempt += 1
                log.warning("replication paused (%s); retrying", error)
                await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
            except BaseException:
                # Anything else (a master that diverges, a cancellation): hand the messages back
                # so they are redelivered, and dead-lettered after the queue's delivery limit,
                # instead of staying unacked on the channel.
                for _, message in events.values():
                    with contextlib.suppress(Exception):
                        await self._hand_back(message)
                raise
        for _, message in events.values():
            await message.ack()

    async def _apply_events(self, events: dict[int, tuple[Event, AbstractIncomingMessage]]) -> None:
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
                self._applied(candidate)
                return
        # The master's log is the truth: what it does not hold, exactly, is poison.
        truth = await self._fetch_and_apply(head, wanted[-1], set(wanted))
        for position in wanted:
            event, message = events[position]
            # every field counts: a tampered copy may carry the genuine chain value
            if truth.get(position) != envelope(event):
                await self._dead_letter(message, f"disagrees with the master's log at {position}")
                del events[position]

    async def _compare_known(
        self, events: dict[int, tuple[Event, AbstractIncomingMessage]], head: int
    ) -> None:
        """A position this store holds: equal chains make a duplicate (acked); a signed event
        that differs is a divergence (dead-lettered, and the master is told)."""
        known = [p for p in events if p <= head]
        if not known:
            return
        ours = await self._store.chains(known)
        for position in known:
            event, message = events[position]
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
                await message.reject(requeue=False)
                del events[position]
                continue
            if isinstance(theirs, dict) and theirs.get("chain") == mine.hex():
                self._rejected("event", f"a signed event at {position} is not the master's")
            else:
                self._diverge(position, "a validly signed event differs from this shadow's log")
            await message.reject(requeue=False)
            del events[position]

    def _diverge(self, position: int, reason: str) -> None:
        if self.diverged is None:
            self.diverged = {"position": position, "reason": reason}
            self._alert(
                "divergence",
                f"this shadow's log differs from its master's at position {position}: {reason}",
                dict(self.diverged),
            )
        self._report_now.set()

    async def _fetch_and_apply(self, head: int, last: int, keep: set[int]) -> dict[int, Any]:
        """Fetch head+1..last from the master page by page, applying each page; return the
        envelopes of the positions in `keep` (to compare the broker's copies with)."""
        kept: dict[int, Any] = {}
        after = head
        while after < last:
            page = await self._fetch(after, min(last, after + FETCH_PAGE))
            if not page:
                break
            await self._writer.replicate(page)  # raises Divergence if the master's log diverges
            self._applied(page)
            kept.update((e.position, envelope(e)) for e in page if e.position in keep)
            after = page[-1].position
        return kept

    def _applied(self, events: Sequence[Event]) -> None:
        self.master_position = max(self.master_position, events[-1].position)
        self._track_lag()
        self._report_now.set()
        if self._on_applied is not None:
            self._on_applied(events)

    async def _fetch(self, after: int, last: int, *, signed: bool = True) -> list[Event]:
        """Positions after+1..last from the master (its answer authenticated as a whole). Each
        event must also pass `admit`, except history below a bootstrap image (`signed=False`),
        which may predate the cluster secret and is chain-checked against the image instead."""
        log.info("fetching positions %d..%d from the master", after + 1, last)
        lines = await self._peer.lines("/ha/peer/events", {"after": after, "limit": last - after})
        try:
            events = [from_envelope(orjson.loads(line)) for line in lines]
            for event in events:
                if signed:
                    admit(event, self._secret, self._cluster, self._catalog)
                else:
                    check_bounds(event)
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError) as error:
            raise Divergence(after + 1, f"the master sent a malformed event: {error}") from error
        except (InvalidInput, Unauthenticated) as error:
            self._alert("divergence", f"the master's own log fails our checks: {error}", {})
            raise Divergence(after + 1, f"the master's log fails our checks: {error}") from error
        if (
            any(e.position != after + 1 + i for i, e in enumerate(events))
            or len(events) > last - after
        ):
            raise Divergence(after + 1, "the master answered other positions than asked for")
        return events

    def _follows(self, event: Event) -> bool:
        """Whether `event` is the next link of this shadow's log (only knowable at head + 1)."""
        head = self._writer.position
        return event.position == head + 1 and link(self._writer.chain, event) == event.chain

    async def _dead_or_duplicate(
        self, message: AbstractIncomingMessage, event: Event, kept: Event
    ) -> None:
        if envelope(event) == envelope(kept):
            await message.ack()
        else:
            await self._dead_letter(
                message, f"two different events claim position {event.position}"
            )

    async def _hand_back(self, message: AbstractIncomingMessage) -> None:
        """Return a message to the queue; on its last allowed delivery, dead-letter it with its
        alert instead (the broker would dead-letter the next return silently)."""
        if last_delivery(message, DELIVERY_LIMIT):
            count = deliveries(message) + 1
            await self._dead_letter(message, f"not applied after {count} deliveries")
        else:
            await message.nack(requeue=True)

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        self._alert(
            "dead-lettered",
            f"replication message dead-lettered: {reason}",
            {"message_id": message.message_id, "routing_key": message.routing_key},
        )
        await message.reject(requeue=False)


def _image(header: dict[str, Any], rows: list[dict[str, Any]]) -> Image:
    for row in rows:
        row["updated_at"] = datetime.fromisoformat(row["updated_at"]).astimezone(UTC)
    state = {f"{r['kind']}/{r['name']}": r["value"] for r in rows if r["live"]}
    return Image(
        int(header["position"]), bytes.fromhex(header["chain"]), int(header["epoch"]), rows, state
    )


__all__ = ["Poison", "Replicator", "ShadowlineError", "parse"]
