"""`shadowline restore FILE`: a backup archive into a stopped instance's database (see
application.restore for why the database and not HTTP, and domain.restore for what is checked
and why the cluster name must be new)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shadowline.cli.common import EXIT_REFUSED, EXIT_USAGE, emit, examples, fail, load_settings, run

if TYPE_CHECKING:
    from shadowline.application.restore import Restored
    from shadowline.settings import Settings

EXAMPLES = examples(
    "export SHADOWLINE_DATABASE_URL=postgresql://postgres@db-2:5432/shadowline",
    "export SHADOWLINE_CLUSTER=prod-2 SHADOWLINE_CLUSTER_SECRET=...   # the origin's secret",
    "shadowline migrate --create-database && shadowline restore prod.slbackup",
    "shadowline restore prod.slbackup --reason 'ticket 4711: node-a lost' --json",
    "shadowline instance                 # then start it, as cluster prod-2",
)


async def _restore(path: Path, size: int, settings: Settings, metadata: dict[str, Any]) -> Restored:
    from shadowline.adapters.archive import lines
    from shadowline.adapters.db import create_engine
    from shadowline.adapters.resources import load_config_schemas
    from shadowline.adapters.restore_store import RestoreTarget
    from shadowline.application.restore import restore
    from shadowline.domain.backup import Reader
    from shadowline.domain.validation import Catalog

    assert settings.cluster_secret is not None
    secret = settings.cluster_secret.get_secret_value()
    reader = Reader(lines(path), secret)
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        return await restore(
            reader,
            RestoreTarget(engine),
            secret=secret,
            cluster=settings.cluster,
            instance=settings.instance,
            catalog=Catalog(load_config_schemas()),
            archive={"file": path.name, "bytes": size},
            metadata=metadata,
        )
    finally:
        await engine.dispose()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as error:
        fail(f"cannot read {path}: {error.strerror}", EXIT_USAGE)


def restore(
    file: Annotated[Path, typer.Argument(help="The archive `shadowline backup` wrote.")],
    actor: Annotated[
        str | None, typer.Option(help="Who restores, for the log (default: the OS user).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why, for the log.")] = None,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not migrate the database first.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the restore event.")] = False,
) -> None:
    """Restore an archive onto a stopped, standalone instance with an empty store (SHADOWLINE_DATABASE_URL), as cluster SHADOWLINE_CLUSTER, which must differ from the archive's cluster: a restored copy never runs beside its origin as a second master.

    Verifies the archive's signature (SHADOWLINE_CLUSTER_SECRET: the origin's secret), every link of the hash chain, every event's signature, and that the state equals the fold of the events; then appends the history and a BackupRestored event in one transaction. Anything wrong: exit 1 and the database is as it was.
    """
    from sqlalchemy.exc import DBAPIError

    from shadowline.adapters.migrate import upgrade
    from shadowline.domain.errors import BackupRefused, Unavailable
    from shadowline.domain.events import envelope

    settings = load_settings()
    if settings.cluster_secret is None:
        fail("SHADOWLINE_CLUSTER_SECRET is needed: it verifies the archive")
    metadata = {"actor": actor or getpass.getuser(), "reason": reason or f"restored {file.name}"}
    try:
        if not no_migrate:
            upgrade(settings.database_url)
        done = run(_restore(file, _size(file), settings, metadata))
    except BackupRefused as error:
        fail(f"restore refused, nothing changed: {error}", EXIT_REFUSED)
    except (Unavailable, OSError, DBAPIError) as error:
        fail(f"database unreachable or unusable: {str(error).splitlines()[0]}", EXIT_USAGE)
    emit(
        envelope(done.record),
        as_json,
        f"restored {done.events} events and {done.items} items of cluster {done.origin_cluster} "
        f"(instance {done.origin_instance}, head {done.origin_head}) as cluster "
        f"{settings.cluster}; recorded as event {done.record.position} (BackupRestored). "
        f"Start the instance with SHADOWLINE_CLUSTER={settings.cluster}.",
    )
