"""The event a client's command makes at its place in a group-commit batch (pure: the writer
holds the versions, the position and the clock)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from uuid import uuid4

from shadowline.domain.commands import Command, ItemVersion, RecordEvent, decide
from shadowline.domain.events import Event


def event_for(
    cmd: Command,
    versions: Mapping[tuple[str, str], ItemVersion],
    overlay: dict[tuple[str, str], ItemVersion],
    position: int,
    epoch: int,
    recorded_at: datetime,
) -> tuple[Event, bool]:
    """(the event, whether it created its item); decided against `overlay` (the versions the
    commands before it in the batch left), else the stored `versions`, and `overlay` updated.
    Raises the command's refusal (VersionConflict, NotFound) as a ShadowlineError."""
    if isinstance(cmd, RecordEvent):
        record = Event(
            uuid4(), position, epoch, cmd.type, None, None, None, cmd.data, cmd.metadata,
            recorded_at,
        )  # fmt: skip
        return record, False
    key = (cmd.kind, cmd.name)
    decision = decide(cmd, overlay.get(key, versions.get(key)))
    overlay[key] = ItemVersion(decision.version, decision.type == "ConfigPut")
    event = Event(
        id=uuid4(),
        position=position,
        epoch=epoch,
        type=decision.type,
        kind=cmd.kind,
        name=cmd.name,
        version=decision.version,
        data=getattr(cmd, "value", None),
        metadata=cmd.metadata,
        recorded_at=recorded_at,
    )
    return event, decision.created


def recorded_now(last: datetime | None) -> datetime:
    """The time to record now: never before `last`, so "state as of a time" is a prefix of
    the log."""
    now = datetime.now(UTC)
    return last if last is not None and now < last else now
