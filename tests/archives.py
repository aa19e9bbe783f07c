"""Backup archives for the tests: a signed log of config events made with the domain's own
functions, and its archive as lines (to tamper with) or as a gzip'd file."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shadowline.domain import audit, trust
from shadowline.domain.backup import Manifest, Sealer, event_line, line, state_line
from shadowline.domain.events import GENESIS, Event, canonical, chain_of, sealed

SECRET = "test-backup-secret-0123456789"
START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def mapping(i: int) -> dict[str, Any]:
    return {
        "virtual_host": f"v{i}",
        "virtual_port": 443,
        "internal_host": "10.0.0.1",
        "internal_port": 1000 + i,
        "protocol": "HTTPS",
    }


def signed_log(
    cluster: str, count: int, *, epochs: Sequence[int] = (), secret: str | None = SECRET
) -> list[Event]:
    """`count` puts of system-mapping m0..m2 (versions in sequence), chained and signed;
    event i in epoch epochs[i] (default 1)."""
    events: list[Event] = []
    chain = GENESIS
    versions: dict[str, int] = {}
    for i in range(count):
        name = f"m{i % 3}"
        versions[name] = versions.get(name, 0) + 1
        event = Event(
            uuid.uuid4(), i + 1, epochs[i] if epochs else 1, "ConfigPut", "system-mapping",
            name, versions[name], mapping(i), {"actor": "ada", "request_id": f"r{i}"},
            START + timedelta(seconds=i),
        )  # fmt: skip
        body = canonical(event)
        chain = chain_of(chain, body)
        signature = trust.signature_of(secret, cluster, chain, body) if secret else None
        events.append(sealed(event, chain, signature))
    return events


def folded(events: Sequence[Event]) -> dict[str, Any]:
    rows: audit.Rows = {}
    for event in events:
        audit.project(rows, event)
    return audit.served_state(rows)


def archive_lines(
    events: Sequence[Event],
    cluster: str,
    *,
    secret: str = SECRET,
    items: dict[str, Any] | None = None,
    manifest: dict[str, Any] | None = None,
) -> list[bytes]:
    """The archive of `events` as domain.backup writes it, signature line last."""
    head = events[-1] if events else None
    made = Manifest(
        cluster, "node-a", head.epoch if head else 1, len(events),
        head.chain if head else GENESIS, START.isoformat(), "test",
    )  # fmt: skip
    sealer = Sealer(secret)
    lines = [sealer.add(line({"manifest": {**made.doc(), **(manifest or {})}}))]
    lines += [sealer.add(event_line(e)) for e in events]
    lines.append(sealer.add(state_line(len(events), folded(events) if items is None else items)))
    lines.append(sealer.signature_line())
    return lines


def resealed(lines: Sequence[bytes], secret: str = SECRET) -> list[bytes]:
    """The same lines with the signature line made anew over them (a forger with the secret)."""
    sealer = Sealer(secret)
    body = [sealer.add(data) for data in lines[:-1]]
    return [*body, sealer.signature_line()]


def write_archive(path: Path, lines: Sequence[bytes]) -> Path:
    path.write_bytes(gzip.compress(b"".join(lines), mtime=0))
    return path
