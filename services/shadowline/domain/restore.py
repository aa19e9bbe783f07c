"""What a backup must prove before it is written or restored, and what a restored store is.

`Verifier` checks an archive's events exactly as the store and a shadow would: each link of the
hash chain recomputed (domain.audit), each signature with the origin cluster's event key (an
unsigned prefix only, as /audit/verify allows), bounds, versions in sequence and no local kind
(domain.replication), each put's value against its kind's schema; at the end, the head against
the manifest and the fold of the events against the state the origin served.

A restored copy is bound to a cluster name other than its origin's, so that it can never run
beside its origin as a second master of one cluster (both would heartbeat, take commands and
claim epochs on the same broker names): the restore refuses the origin's name (and every name
its history was restored from), and records `BackupRestored` naming the cluster it restored
into; an instance whose newest such event names another cluster refuses to start
(`start_refusal`). The origin's events are signed anew for the new cluster (their chain values,
which the signatures vouch for, stay exactly the origin's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from uuid import uuid4

from shadowline.domain import trust
from shadowline.domain.audit import Audit, Rows, served_state
from shadowline.domain.backup import Manifest
from shadowline.domain.commands import ItemVersion
from shadowline.domain.errors import BackupRefused, Divergence, Gap, InvalidInput
from shadowline.domain.events import (
    CONFIG_PUT,
    GENESIS,
    Event,
    canonical,
    chain_of,
    sealed,
)
from shadowline.domain.kinds import REPLICATED_KINDS
from shadowline.domain.replication import check_bounds, check_replicated
from shadowline.domain.state import digest
from shadowline.domain.validation import Catalog

RESTORED: Final = "BackupRestored"


class Verifier:
    """Feeds an archive's events page by page (memory: one page and the items)."""

    def __init__(self, manifest: Manifest, secret: str, catalog: Catalog) -> None:
        self.manifest = manifest
        self._audit = Audit({}, secret, manifest.cluster)
        self._catalog = catalog
        self._versions: dict[tuple[str, str], ItemVersion] = {}
        self.position, self.chain, self.epoch = 0, GENESIS, 0
        self.recorded_at: datetime | None = None
        # Every cluster this history was restored from (and the origin's own name).
        self.lineage = {manifest.cluster}

    def feed(self, events: Sequence[Event]) -> None:
        for event in events:
            try:
                check_bounds(event)
                if event.type == CONFIG_PUT and event.kind in REPLICATED_KINDS:
                    self._catalog.check(event.kind, event.name or "", event.data)
            except InvalidInput as error:
                raise BackupRefused(f"the event at position {event.position}: {error}") from error
            if event.type == RESTORED and isinstance(event.data, dict):
                origin = event.data.get("origin")
                if isinstance(origin, dict) and isinstance(origin.get("cluster"), str):
                    self.lineage.add(origin["cluster"])
        finding = self._audit.feed(events)
        if finding is not None:
            raise BackupRefused(_sentence({**finding, "cluster": self.manifest.cluster}))
        try:
            overlay = check_replicated(
                self.position, self.chain, self.epoch, self._versions, events
            )
        except (Divergence, Gap) as error:
            raise BackupRefused(f"the history breaks a rule of the store: {error}") from error
        self._versions.update(overlay)
        if events:
            last = events[-1]
            self.position, self.chain, self.epoch = last.position, last.chain, last.epoch
            self.recorded_at = last.recorded_at

    def finish(self, items: Mapping[str, Any]) -> None:
        """The head is the manifest's, and the events fold to the state the origin served."""
        head = (self.manifest.position, self.manifest.chain)
        if (self.position, self.chain) != head:
            raise BackupRefused(
                f"the events end at position {self.position} with chain {self.chain.hex()}, "
                f"the manifest says {head[0]} with {head[1].hex()}"
            )
        if self.position:
            # No signed event at all, yet a secret: stripped and re-chained (domain.audit).
            verdict = self._audit.finish(self.position, self.chain, self._audit.rows)
            if not verdict["ok"]:
                raise BackupRefused(_sentence({**verdict, "cluster": self.manifest.cluster}))
        folded = served_state(self._audit.rows)
        if digest(folded) != digest(items):
            raise BackupRefused(
                "the state in the archive is not the fold of its events: "
                f"{_first_key(folded, items)} differs"
            )

    @property
    def rows(self) -> Rows:
        return self._audit.rows

    @property
    def items(self) -> dict[str, Any]:
        return served_state(self._audit.rows)


def _sentence(finding: Mapping[str, Any]) -> str:
    if finding["problem"] != "signature":
        return str(finding["sentence"])
    return (
        f"{finding['sentence']} (or SHADOWLINE_CLUSTER_SECRET is not the secret of cluster "
        f"{finding.get('cluster')!r})"
    )


def _first_key(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    for key in sorted(a.keys() | b.keys()):
        if digest({key: a.get(key)}) != digest({key: b.get(key)}):
            return key
    return "nothing"


def resigned(events: Sequence[Event], secret: str, cluster: str) -> list[Event]:
    """The events as they are, signed for `cluster` (the unsigned prefix stays unsigned)."""
    return [
        e
        if e.signature is None
        else sealed(e, e.chain, trust.signature_of(secret, cluster, e.chain, canonical(e)))
        for e in events
    ]


def target_refusal(manifest: Manifest, lineage: set[str], cluster: str) -> str | None:
    """Why the archive may not be restored as `cluster`, or None."""
    if cluster == manifest.cluster:
        return (
            f"the archive is of cluster {cluster!r}: restored under the same name it could run "
            "beside its origin as a second master; set SHADOWLINE_CLUSTER to a new name "
            f"(e.g. {cluster[:55]}-restored)"
        )
    if cluster in lineage:
        return (
            f"the archive's history was itself restored from cluster {cluster!r}: pick a new name"
        )
    return None


def restore_event(
    verifier: Verifier,
    *,
    secret: str,
    cluster: str,
    instance: str,
    archive: Mapping[str, Any],
    metadata: Mapping[str, Any],
) -> Event:
    """The audited record of the restore, the next link of the restored log, signed."""
    m = verifier.manifest
    now = datetime.now(UTC)
    if verifier.recorded_at is not None and now < verifier.recorded_at:
        now = verifier.recorded_at  # recorded_at never goes backwards (application.writer)
    origin = {k: v for k, v in m.doc().items() if k not in ("format", "format_version")}
    data = {"cluster": cluster, "instance": instance, "origin": origin, "archive": dict(archive)}
    event = Event(
        uuid4(), verifier.position + 1, max(verifier.epoch, 1), RESTORED, None, None, None, data,
        {"request_id": str(uuid4()), **metadata}, now,
    )  # fmt: skip
    body = canonical(event)
    chain = chain_of(verifier.chain, body)
    return sealed(event, chain, trust.signature_of(secret, cluster, chain, body))


def start_refusal(restored: Mapping[str, Any] | None, cluster: str) -> str | None:
    """Why an instance of `cluster` may not start on a store whose newest `BackupRestored`
    event has `restored` as its data (None: never restored), or None."""
    if restored is None or restored.get("cluster") == cluster:
        return None
    origin = restored.get("origin")
    was = origin.get("cluster") if isinstance(origin, dict) else None
    bound = restored.get("cluster")
    return (
        f"this store was restored from a backup of cluster {was!r} as cluster {bound!r}; it runs "
        f"only as {bound!r}, never as {cluster!r} (a second master beside its origin): set "
        f"SHADOWLINE_CLUSTER={bound}"
    )
