"""What a shadow checks before it appends events that came from its master."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shadowline.domain.commands import ItemVersion
from shadowline.domain.errors import Divergence, Gap
from shadowline.domain.events import CONFIG_DELETED, CONFIG_EVENT_TYPES, CONFIG_PUT, Event, link
from shadowline.domain.kinds import LOCAL_KINDS, REPLICATED_KINDS


def check_replicated(
    position: int,
    chain: bytes,
    epoch: int,
    versions: Mapping[tuple[str, str], ItemVersion],
    events: Sequence[Event],
) -> dict[tuple[str, str], ItemVersion]:
    """Check that `events` extend the local log exactly; return the versions they lead to.

    Raises Gap when the first event is not position+1, Divergence when an event does not
    follow: a wrong chain value, an epoch older than its predecessor's, a local-only or unknown
    kind, or a version that skips.
    """
    overlay: dict[tuple[str, str], ItemVersion] = {}
    for event in events:
        if event.position != position + 1:
            raise Gap(position + 1, event.position)
        if event.epoch < epoch:
            raise Divergence(event.position, f"epoch {event.epoch} is older than {epoch}")
        if link(chain, event) != event.chain:
            raise Divergence(event.position, "the chain value does not follow from the local log")
        if event.type in CONFIG_EVENT_TYPES:
            _check_config_event(event, overlay.get(_key(event), versions.get(_key(event))))
            overlay[_key(event)] = ItemVersion(event.version or 0, event.type == CONFIG_PUT)
        position, chain, epoch = event.position, event.chain, event.epoch
    return overlay


def _key(event: Event) -> tuple[str, str]:
    return (event.kind or "", event.name or "")


def _check_config_event(event: Event, current: ItemVersion | None) -> None:
    if event.kind in LOCAL_KINDS:
        raise Divergence(event.position, f"local-only kind {event.kind!r} is never replicated")
    if event.kind not in REPLICATED_KINDS:
        raise Divergence(event.position, f"unknown kind {event.kind!r}")
    expected = (current.version if current else 0) + 1
    if event.version != expected:
        raise Divergence(
            event.position, f"version {event.version} of {event.key}, expected {expected}"
        )
    if event.type == CONFIG_DELETED and not (current and current.live):
        raise Divergence(event.position, f"deletes {event.key}, which does not exist")
