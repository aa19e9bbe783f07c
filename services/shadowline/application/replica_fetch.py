"""What a shadow copies from its master over HTTP, checked before anything lands: the bootstrap
image (digest-checked as a whole), pages of the master's log (authenticated as a whole, every
event admitted), and the history below a bootstrap image (chained to the image page by page).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from shadowline.application.ports.monitoring import AlertSink
from shadowline.application.ports.peer import Peer
from shadowline.application.ports.store import EventStore
from shadowline.domain.alerting import AlertName
from shadowline.domain.errors import Divergence, InvalidInput, Unauthenticated, Unavailable
from shadowline.domain.events import GENESIS, Event, from_envelope, verify_chain
from shadowline.domain.records import Image
from shadowline.domain.replication import admit, check_bounds
from shadowline.domain.state import digest
from shadowline.domain.validation import Catalog

log = logging.getLogger("shadowline.application.replica")


BACKFILL_PAGE = 5000  # events per page of the history copied below a bootstrap image
FETCH_PAGE = 5000  # events per request when fetching a missing range from the master


class MasterLog:
    """The master's image and log as this shadow may use them."""

    def __init__(
        self, peer: Peer, *, alert: AlertSink, secret: str, cluster: str, catalog: Catalog
    ) -> None:
        self._peer = peer
        self._alert = alert
        self._secret = secret
        self._cluster = cluster
        self._catalog = catalog

    async def image(self) -> Image:
        """The master's image, refused (alert.corrupt-snapshot) unless its digests check."""
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
                AlertName.CORRUPT_SNAPSHOT,
                "the master's image failed its digest check; refused",
                {},
            )
            raise Unavailable("corrupt image from the master: digest mismatch")
        return image

    async def events(self, after: int, last: int, *, signed: bool = True) -> list[Event]:
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
            self._alert(AlertName.DIVERGENCE, f"the master's own log fails our checks: {error}", {})
            raise Divergence(after + 1, f"the master's log fails our checks: {error}") from error
        if (
            any(e.position != after + 1 + i for i, e in enumerate(events))
            or len(events) > last - after
        ):
            raise Divergence(after + 1, "the master answered other positions than asked for")
        return events

    async def backfill(self, store: EventStore) -> None:
        """Copy the history below the bootstrap position, checked against the installed chain."""
        base = (await store.head()).base_position
        image = await store.snapshot_at(base) if base else None
        if image is None:
            return
        # Page by page, each page chained to the one before, the last one to the image: the
        # history is checked exactly as a whole, without holding all of it in memory.
        previous, after = GENESIS, 0
        while after < base:
            page = await self.events(after, min(after + BACKFILL_PAGE, base), signed=False)
            done = bool(page) and page[-1].position >= base
            if (
                not page
                or page[0].position != after + 1
                or verify_chain(previous, page)
                or (done and page[-1].chain != image.chain)
            ):
                self._alert(
                    AlertName.DIVERGENCE,
                    "the master's history does not lead to the bootstrap image",
                    {},
                )
                return
            await store.backfill(page, 0 if done else base)
            previous, after = page[-1].chain, page[-1].position
        log.info("history backfilled: positions 1..%d", base)


def _image(header: dict[str, Any], rows: list[dict[str, Any]]) -> Image:
    for row in rows:
        row["updated_at"] = datetime.fromisoformat(row["updated_at"]).astimezone(UTC)
    state = {f"{r['kind']}/{r['name']}": r["value"] for r in rows if r["live"]}
    return Image(
        int(header["position"]), bytes.fromhex(header["chain"]), int(header["epoch"]), rows, state
    )
