"""GET /audit/verify: the whole log walked from genesis in one consistent snapshot of the store.

The chain says whether the log was rewritten; the fold says whether what is served (the items
table) is what the log says; the snapshots are checked on the way (they serve `?at=` reads).
"""

from __future__ import annotations

from typing import Any

from shadowline.application.ports.store import EventStore
from shadowline.domain.audit import Audit
from shadowline.domain.errors import Unavailable
from shadowline.domain.state import digest

PAGE = 5000


async def verify(
    store: EventStore, secret: str | None, cluster: str, page: int = PAGE
) -> dict[str, Any]:
    """The audit's finding as the route returns it: `ok`, and on a problem what and where."""
    async with store.consistent() as view:
        head = await view.head()
        if head.base_position:
            raise Unavailable(
                f"history before position {head.base_position} is still being copied from the "
                "master (shadow bootstrap): the log cannot be folded yet; verify again shortly"
            )
        marks = await view.marks()
        for position, mark in sorted(marks.items()):
            # Each state against its own digest (one at a time: bounded memory); the audit then
            # checks each digest against the fold of the log.
            state = await view.snapshot_state(position)
            if digest(state) != mark.digest:
                return {
                    "ok": False,
                    "problem": "snapshot",
                    "position": position,
                    "expected": mark.digest,
                    "found": digest(state),
                    "checked": 0,
                    "sentence": f"the snapshot at position {position} does not match its digest",
                }
        audit = Audit(marks, secret, cluster)
        after = 0
        while batch := await view.events(after, page):
            if (finding := audit.feed(batch)) is not None:
                return finding
            after = batch[-1].position
        return audit.finish(head.position, head.chain, await view.served())
