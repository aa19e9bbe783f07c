"""The promote command (commands/promote.json): parsed once, verified once, and the pure rules
of a promotion (when a shadow takes it, what it records).

A watchdog sends it over the broker, a master switching roles over HTTP; both arrive here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shadowline.domain import signing, trust
from shadowline.domain.errors import Conflict, Forbidden
from shadowline.domain.events import Event, link
from shadowline.domain.hooks import Cause
from shadowline.domain.records import Head


@dataclass(frozen=True, slots=True)
class PromoteCommand:
    """A promote command as it arrived. `doc` is the document as signed: the signature is
    checked over it, and the fields MasterPromoted records are copied from it as the signer
    wrote them."""

    doc: Mapping[str, Any]

    @classmethod
    def parse(cls, doc: Any) -> PromoteCommand:
        """Forbidden unless `doc` is a JSON object; its fields are checked by `verify`, under
        the signature (the broker's consumer has checked its type against the routing key)."""
        if not isinstance(doc, Mapping):
            raise Forbidden(f"unknown command of type {type(doc).__name__}: not an object")
        return cls(dict(doc))

    @property
    def epoch(self) -> int:
        epoch = self.doc.get("epoch")
        assert isinstance(epoch, int), "read only after verify"
        return epoch

    @property
    def fork_position(self) -> int | None:
        """Only a planned handover (switch roles) names the position it hands over at."""
        fork = self.doc.get("fork_position")
        return fork if isinstance(fork, int) else None

    @property
    def command_id(self) -> str:
        return str(self.doc.get("command_id"))

    def verify(self, secret: str, *, now: float, epoch: int, cluster: str, instance: str) -> None:
        """Forbidden unless it is authentic, fresh, about a newer epoch than `epoch`, and for
        this instance of this cluster."""
        signing.verify(secret, self.doc, now, epoch)
        if self.doc.get("cluster") != cluster:
            raise Forbidden(
                f"command for cluster {self.doc.get('cluster')!r}, not for this instance's cluster"
            )
        if self.doc.get("shadow") != instance:
            raise Forbidden(f"command for {self.doc.get('shadow')!r}, not for this instance")


def expired_while_draining(command: PromoteCommand, now: float) -> Conflict | None:
    """Verified on arrival, but the drain took time: a command held back on the way must not
    take effect after the master stopped waiting for it."""
    issued = command.doc.get("issued_at")
    if not isinstance(issued, int | float) or abs(now - issued) > signing.WINDOW:
        return Conflict(f"the promote command expired while draining ({issued})")
    return None


def fork_mismatch(command: PromoteCommand, fork: int) -> Conflict | None:
    """A planned handover names the position it handed over at: the shadow must be there."""
    expected = command.fork_position
    if expected is not None and expected != fork:
        return Conflict(f"the master handed over at position {expected}, this shadow is at {fork}")
    return None


def cause(command: PromoteCommand) -> Cause:
    """A planned handover names its fork position; a watchdog's promote does not."""
    return Cause.SWITCH if command.fork_position is not None else Cause.FAILOVER


def master_promoted(
    command: PromoteCommand, *, fork: int, previous_master: str | None, via: str
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The MasterPromoted event a promotion records: (type, data, metadata)."""
    doc = command.doc
    data = {
        "master": doc.get("shadow"),  # who became master: the shadow it was verified to name
        "epoch": command.epoch,
        "fork_position": fork,
        "previous_master": previous_master,
        "previous_epoch": doc.get("previous_epoch"),
        "reason": doc.get("reason"),
        "command_id": doc.get("command_id"),
        "issued_by": doc.get("issued_by"),
    }
    metadata = {"actor": str(doc.get("issued_by") or via), "request_id": command.command_id}
    return "MasterPromoted", data, metadata


def promoted_sentence(instance: str, command: PromoteCommand, fork: int, via: str) -> str:
    return (
        f"{instance} promoted to master in epoch {command.epoch} at fork position {fork} "
        f"({command.doc.get('reason')}; by {command.doc.get('issued_by')} via {via})"
    )


def handover_command(
    *,
    cluster: str,
    shadow: str,
    epoch: int,
    issued_at: float,
    issued_by: str,
    actor: str,
    fork: int,
) -> dict[str, Any]:
    """The (unsigned) promote a master switching roles sends its shadow."""
    return {
        "type": "promote",
        "cluster": cluster,
        "shadow": shadow,
        "epoch": epoch + 1,
        "previous_epoch": epoch,
        "command_id": str(uuid.uuid4()),
        "issued_at": issued_at,
        "issued_by": issued_by,
        "reason": f"switch roles requested by {actor}",
        "fork_position": fork,
    }


def sealed_event(
    head: Head,
    *,
    epoch: int,
    type_: str,
    data: dict[str, Any],
    metadata: dict[str, Any],
    now: datetime,
    secret: str | None,
    cluster: str,
) -> Event:
    """The event at head + 1, chained and signed as the writer chains and signs its own: an HA
    event committed in the same transaction as a role change (never appended by the writer)."""
    # recorded_at never goes backwards, so "state as of a time" is a prefix of the log.
    recorded_at = max(now, head.recorded_at) if head.recorded_at is not None else now
    event = Event(
        uuid.uuid4(), head.position + 1, epoch, type_, None, None, None, data, metadata,
        recorded_at,
    )  # fmt: skip
    chained = replace(event, chain=link(head.chain, event))
    if not secret:
        return chained
    return replace(chained, signature=trust.event_signature(secret, cluster, chained))


class TriedCommands:
    """The promote commands this shadow took up, by id, for as long as a copy of one could
    still pass its window: a copy replayed by anyone on the broker after an aborted promotion
    must not run the before-promote hook again (the watchdog sends a new id for every try)."""

    KEPT = 1000  # ids, at most; signed commands only, so only a watchdog could send more

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def first(self, command_id: str, now: float) -> bool:
        """Whether this id is new (and note it as taken up at `now`)."""
        for old, at in list(self._seen.items()):
            if now - at <= 2 * signing.WINDOW and len(self._seen) <= self.KEPT:
                break  # in order of arrival: the rest are younger
            del self._seen[old]
        if command_id in self._seen:
            return False
        self._seen[command_id] = now
        return True


def hook_would_outlast(command: PromoteCommand, now: float, hook_timeout: float) -> Conflict | None:
    """A before-promote hook may only start if the command outlives its longest run (and a
    second for the commit): a hook that succeeded for a promotion then refused as expired
    would have moved the virtual IP for nothing."""
    late = expired_while_draining(command, now + hook_timeout + 1.0)
    if late is None:
        return None
    return Conflict(
        f"the promote command would expire while the before-promote hook runs (up to "
        f"{hook_timeout:g} s): the hook was not run; the watchdog sends a new command"
    )
