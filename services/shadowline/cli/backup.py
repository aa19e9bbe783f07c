"""`shadowline backup`: one signed archive of a running instance's configuration and history.

Read through the instance's API, as `history export` reads it (GET /events a page at a time,
so the memory of one page and the items): the head is fixed first (GET /health), and the
archive holds exactly positions 1 to it and the state right after it (GET /config?at=head), so a
backup taken while writes go on is consistent at one position. Nothing the instance answers is
signed into an archive unchecked: every chain link and event signature is verified with the
cluster's keys and the fold of the events must equal the state served (domain.restore).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer

from shadowline.cli.common import (
    DEFAULT_URL,
    EXIT_REFUSED,
    Password,
    Url,
    User,
    client,
    emit,
    examples,
    fail,
    load_settings,
    reported,
)

if TYPE_CHECKING:
    from shadowline.client.http import Client
    from shadowline.domain.validation import Catalog


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


EXAMPLES = examples(
    "export SHADOWLINE_CLUSTER=prod SHADOWLINE_CLUSTER_SECRET=...   # the instance's own",
    "shadowline backup --output prod.slbackup --url http://master:8080 --user ada",
    "shadowline backup -o nightly-$(date +%F).slbackup --json | jq .head",
    "# then, on a stopped, standalone, empty instance of another cluster name:",
    "shadowline restore prod.slbackup",
)


def write_archive(
    c: Client, out: Sink, *, secret: str, cluster: str, catalog: Catalog, page: int
) -> dict[str, Any]:
    """Write the archive of the instance `c` reads from; returns the manifest."""
    from shadowline import __version__
    from shadowline.cli.export import Query, events
    from shadowline.domain.backup import Manifest, Sealer, event_line, line, state_line
    from shadowline.domain.events import GENESIS, from_envelope
    from shadowline.domain.restore import Verifier

    health = c.health()
    head = int(health["position"])
    last = list(c.events(head - 1, 1)) if head else []
    chain = bytes.fromhex(last[0]["chain"]) if last else GENESIS
    items = c.state(at=head)["items"]
    created = datetime.now(UTC).isoformat()
    manifest = Manifest(
        cluster, health["instance"], health["epoch"], head, chain, created, __version__
    )
    verifier, sealer = Verifier(manifest, secret, catalog), Sealer(secret)
    out.write(sealer.add(line({"manifest": manifest.doc()})))
    batch = []
    for doc in events(c, Query(0, head, page)):
        batch.append(from_envelope(doc))
        if len(batch) == page or batch[-1].position == head:
            verifier.feed(batch)  # only what verifies is sealed
            for event in batch:
                out.write(sealer.add(event_line(event)))
            batch = []
    verifier.finish(items)
    out.write(sealer.add(state_line(head, items)))
    out.write(sealer.signature_line())
    return {**manifest.doc(), "items": len(items), "mac": sealer.mac()}


def backup(
    output: Annotated[
        str, typer.Option("--output", "-o", help="The archive file to write (- for stdout).")
    ],
    page_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="Events per request to the instance.")
    ] = 5000,
    url: Url = DEFAULT_URL,
    user: User = "admin",
    password: Password = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Write ONE archive of the replicated configuration and its whole history (every event, chain included), signed with a key derived from SHADOWLINE_CLUSTER_SECRET.

    SHADOWLINE_CLUSTER must name the instance's cluster: every event's signature is checked for it. Needs a user with role auditor or admin. The file is written as FILE.partial and renamed once whole. Restore it with `shadowline restore FILE`.
    """
    from shadowline.adapters.archive import compressed
    from shadowline.adapters.resources import load_config_schemas
    from shadowline.cli.history import _target
    from shadowline.domain.errors import BackupRefused
    from shadowline.domain.validation import Catalog

    if as_json and output == "-":
        fail("--json prints the manifest on standard output: give --output FILE")
    settings = load_settings()
    if settings.cluster_secret is None:
        fail("SHADOWLINE_CLUSTER_SECRET is needed: it signs the archive")
    secret, catalog = settings.cluster_secret.get_secret_value(), Catalog(load_config_schemas())
    with client(url, user, password) as c:
        try:
            with reported(), _target(output) as out, compressed(out) as gz:
                made = write_archive(
                    c, gz, secret=secret, cluster=settings.cluster, catalog=catalog, page=page_size
                )
        except BackupRefused as error:
            fail(f"backup refused, nothing written: {error}", EXIT_REFUSED)
        except KeyboardInterrupt:
            fail("interrupted: no archive written", 130)
    text = (
        f"backed up {made['head']['position']} events and {made['items']} items of cluster "
        f"{made['cluster']} (instance {made['origin_instance']}, epoch {made['epoch']}) to {output}"
    )
    emit(made, True) if as_json else typer.echo(text, err=True)
