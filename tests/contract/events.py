"""Events as a writer would make them, chained, for stores to be given directly."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from shadowline.domain.events import CONFIG_DELETED, CONFIG_PUT, Event, link

META = {"actor": "test", "request_id": "r-1"}
START = datetime(2026, 1, 1, tzinfo=UTC)


def put(name: str, version: int, value: Any, **metadata: Any) -> dict[str, Any]:
    return {
        "type": CONFIG_PUT,
        "kind": "subaccount",
        "name": name,
        "version": version,
        "data": value,
        "metadata": {**META, **metadata},
    }


def delete(name: str, version: int) -> dict[str, Any]:
    return {
        "type": CONFIG_DELETED,
        "kind": "subaccount",
        "name": name,
        "version": version,
        "data": None,
        "metadata": dict(META),
    }


def ha(type_: str, **data: Any) -> dict[str, Any]:
    return {
        "type": type_,
        "kind": None,
        "name": None,
        "version": None,
        "data": data,
        "metadata": dict(META),
    }


def chained(
    after: int, chain: bytes, specs: list[dict[str, Any]], epoch: int = 1, signed: bool = False
) -> list[Event]:
    """Events at after+1.., one second apart from START, each linked to the one before."""
    made = []
    for offset, spec in enumerate(specs, start=1):
        position = after + offset
        event = Event(
            id=uuid4(),
            position=position,
            epoch=epoch,
            recorded_at=START + timedelta(seconds=position),
            **spec,
        )
        chain = link(chain, event)
        made.append(replace(event, chain=chain, signature=b"s" * 32 if signed else None))
    return made
