"""The backup archive's format: lines of JSON in one order, sealed by one MAC.

An archive is NDJSON (gzip'd by the file adapter), in this order and nothing else:

1. `{"manifest": {...}}`: format and version, the origin's cluster, instance and epoch, the
   head (position and chain value) the archive ends at, when and by which version it was made;
2. the head's events, positions 1 to head, each the envelope GET /events sends, chain and
   signature included (so an archive's middle is a `history export`);
3. `{"state": {"position", "digest", "items"}}`: what the origin served at the head;
4. `{"signature": {"algorithm", "key", "lines", "mac"}}`: HMAC-SHA256 over the exact bytes of
   every line before it, with the cluster's backup key (domain.keys.BACKUP, derived from
   SHADOWLINE_CLUSTER_SECRET like every other key and for this purpose only).

Why this and not a tar of files: one stream, written and read a page at a time with nothing to
seek back to; the MAC over the uncompressed bytes holds whatever gzip implementation wrote them;
`zcat | jq` reads it. Why the MAC last: a writer knows it only at the end. So a reader meets it
last too, and the restore holds everything it appends in one transaction until the MAC, the
chain and the fold have all been checked: a tampered, truncated or reordered archive leaves the
target exactly as it was.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from shadowline.domain import keys
from shadowline.domain.errors import BackupRefused
from shadowline.domain.events import Event, envelope, from_envelope
from shadowline.domain.state import digest

FORMAT: Final = "shadowline-backup"
FORMAT_VERSION: Final = 1
ALGORITHM: Final = "HMAC-SHA256"
KEY: Final = "HKDF-SHA256(SHADOWLINE_CLUSTER_SECRET, info shadowline/v1/backup)"
# One line's bytes at most (the state line holds every item): bounds what a crafted archive can
# make a reader allocate before its MAC is known.
MAX_LINE: Final = 256 * 1024 * 1024
# The bytes of event lines one page may hold (a page is handed on whole, then checked): so a
# crafted archive of many huge event lines costs at most this plus one line.
PAGE_BYTES: Final = 64 * 1024 * 1024


def line(doc: Any) -> bytes:
    return orjson.dumps(doc) + b"\n"


@dataclass(frozen=True, slots=True)
class Manifest:
    """What an archive says of itself (its first line, covered by the MAC like the rest)."""

    cluster: str
    instance: str
    epoch: int
    position: int
    chain: bytes
    created_at: str
    program_version: str

    def doc(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "cluster": self.cluster,
            "origin_instance": self.instance,
            "epoch": self.epoch,
            "head": {"position": self.position, "chain": self.chain.hex()},
            "created_at": self.created_at,
            "program_version": self.program_version,
        }

    @classmethod
    def of(cls, doc: Any) -> Manifest:
        """The manifest in a first line's `manifest` object; BackupRefused if it is not one."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise BackupRefused("not a shadowline backup: the first line is no manifest")
        if doc.get("format_version") != FORMAT_VERSION:
            raise BackupRefused(
                f"backup format version {doc.get('format_version')!r}: this program reads "
                f"version {FORMAT_VERSION} only"
            )
        try:
            head = doc["head"]
            chain = bytes.fromhex(head["chain"])
            found = cls(
                cluster=str(doc["cluster"]),
                instance=str(doc["origin_instance"]),
                epoch=_count(doc["epoch"]),
                position=_count(head["position"]),
                chain=chain,
                created_at=str(doc["created_at"]),
                program_version=str(doc["program_version"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise BackupRefused(f"the manifest is malformed ({error!r})") from error
        if len(chain) != 32:
            raise BackupRefused("the manifest's head chain is not 32 bytes")
        return found


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return value


class Sealer:
    """The MAC over an archive's lines, as they are written or read."""

    def __init__(self, secret: str) -> None:
        self._mac = hmac.new(keys.derive(secret, keys.BACKUP), digestmod=hashlib.sha256)
        self.lines = 0

    def add(self, data: bytes) -> bytes:
        self._mac.update(data)
        self.lines += 1
        return data

    def mac(self) -> str:
        return self._mac.hexdigest()

    def signature_line(self) -> bytes:
        return line(
            {
                "signature": {
                    "algorithm": ALGORITHM,
                    "key": KEY,
                    "lines": self.lines,
                    "mac": self.mac(),
                }
            }
        )

    def check(self, doc: Any) -> str:
        """The MAC, if `doc` (the signature line's object) is the one of the lines so far."""
        given = doc.get("mac") if isinstance(doc, dict) else None
        if not isinstance(given, str) or not hmac.compare_digest(given, self.mac()):
            raise BackupRefused(
                "the archive's signature does not verify: it was changed after it was written, "
                "or SHADOWLINE_CLUSTER_SECRET is not the secret of the cluster that wrote it"
            )
        return given


def state_line(position: int, items: Mapping[str, Any]) -> bytes:
    return line({"state": {"position": position, "digest": digest(items), "items": items}})


def event_line(event: Event) -> bytes:
    return line(envelope(event))


class Reader:
    """An archive's lines in their one order; each read step refuses what is out of place."""

    def __init__(self, lines: Iterator[bytes], secret: str) -> None:
        self._lines = lines
        self._sealer = Sealer(secret)
        self.number = 0  # of the last line read
        self.manifest = Manifest.of(self._tagged("manifest", "the manifest"))

    def _next(self, what: str) -> bytes | None:
        data = next(self._lines, None)
        if data is None:
            return None
        self.number += 1
        if not data.endswith(b"\n"):
            raise BackupRefused(f"line {self.number} ({what}) is cut short: a truncated archive")
        return data

    def _tagged(self, tag: str, what: str) -> Any:
        data = self._next(what)
        if data is None:
            raise BackupRefused(f"the archive ends before {what} (line {self.number + 1})")
        doc = _parse(data, self.number)
        if not isinstance(doc, dict) or list(doc) != [tag]:
            raise BackupRefused(f"line {self.number} should be {what}: lines out of order")
        if tag != "signature":
            self._sealer.add(data)
        return doc[tag]

    def events(self, page: int) -> Iterator[list[Event]]:
        """The events 1..head, `page` at a time; positions must follow one another exactly."""
        batch: list[Event] = []
        size = 0
        for position in range(1, self.manifest.position + 1):
            data = self._next(f"the event at position {position}")
            if data is None:
                raise BackupRefused(
                    f"the archive ends after {position - 1} of {self.manifest.position} events: "
                    "truncated"
                )
            batch.append(self._event(data, position))
            size += len(data)
            if len(batch) == page or size >= PAGE_BYTES:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def _event(self, data: bytes, position: int) -> Event:
        doc = _parse(data, self.number)
        if isinstance(doc, dict) and list(doc) in (["state"], ["signature"]):
            raise BackupRefused(
                f"the archive ends after {position - 1} of {self.manifest.position} events "
                f"(line {self.number} is the {next(iter(doc))}): lines were removed"
            )
        try:
            event = from_envelope(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise BackupRefused(
                f"line {self.number} should be the event at position {position} ({error!r})"
            ) from error
        if event.position != position:
            raise BackupRefused(
                f"line {self.number} holds position {event.position} where {position} belongs: "
                "a line is missing, repeated or out of order"
            )
        self._sealer.add(data)
        return event

    def state(self) -> dict[str, Any]:
        doc = self._tagged("state", "the state")
        items = doc.get("items") if isinstance(doc, dict) else None
        if not isinstance(items, dict) or doc.get("position") != self.manifest.position:
            raise BackupRefused("the state line is malformed or not at the manifest's head")
        return items

    def close(self) -> str:
        """Check the signature line and that nothing follows it; returns the archive's MAC."""
        mac = self._sealer.check(self._tagged("signature", "the signature"))
        if self._next("after the signature") is not None:
            raise BackupRefused(f"line {self.number} follows the signature: not one archive")
        return mac


def _parse(data: bytes, number: int) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise BackupRefused(f"line {number} is not JSON: {error}") from error
