"""What a shadow checks before it appends events that came from its master."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from shadowline.domain import trust
from shadowline.domain.commands import ItemVersion
from shadowline.domain.errors import Divergence, FieldError, Gap, InvalidInput, Unauthenticated
from shadowline.domain.events import CONFIG_DELETED, CONFIG_EVENT_TYPES, CONFIG_PUT, Event, link
from shadowline.domain.kinds import LOCAL_KINDS, REPLICATED_KINDS
from shadowline.domain.validation import Catalog

# Bounds checked before anything is allocated for an event (positions are BIGINT, epochs and
# versions INTEGER in the store; no real log comes near them).
MAX_POSITION: Final = 2**62
MAX_INT32: Final = 2**31 - 1


def check_bounds(event: Event) -> None:
    """Raise InvalidInput when a field is out of the store's range or a hash has the wrong size."""
    problems = [
        FieldError(path, message)
        for path, ok, message in (
            ("$.position", 1 <= event.position <= MAX_POSITION, f"must be 1..{MAX_POSITION}"),
            ("$.epoch", 0 <= event.epoch <= MAX_INT32, "out of range"),
            ("$.version", event.version is None or 1 <= event.version <= MAX_INT32, "out of range"),
            ("$.chain", len(event.chain) == 32, "must be 32 bytes"),
            (
                "$.signature",
                event.signature is None or len(event.signature) == 32,
                "must be 32 bytes",
            ),
        )
        if not ok
    ]
    if problems:
        raise InvalidInput(problems)


def admit(event: Event, secret: str, cluster: str, catalog: Catalog) -> None:
    """What any replicated event must pass on its own, before its place in the log is checked:
    in bounds, signed by the cluster (so written by a master of it), and a put's value valid
    for its kind. Raises InvalidInput or Unauthenticated."""
    check_bounds(event)
    if not trust.event_signed(secret, cluster, event):
        raise Unauthenticated(f"event at position {event.position} is not signed by the cluster")
    if event.type == CONFIG_PUT and event.kind in REPLICATED_KINDS:
        catalog.check(event.kind, event.name or "", event.data)


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
