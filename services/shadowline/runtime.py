"""Running one instance: migrate, load, serve HTTP, and shut down gracefully on SIGTERM.

On SIGTERM uvicorn stops accepting connections and lets in-flight requests finish; then the
writer takes no more commands, commits what is queued, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Iterator

import uvicorn
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.types import ASGIApp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shadowline.adapters.migrate import upgrade
from shadowline.adapters.restore_store import restored_as
from shadowline.application.supervisor import awaiting
from shadowline.bootstrap import Instance, build_instance
from shadowline.domain.commands import RecordEvent
from shadowline.domain.errors import BackupRefused, Unavailable
from shadowline.domain.restore import start_refusal
from shadowline.entrypoints.http.limits import (
    ConnectionGuard,
    descriptor_room,
    guarded_protocol,
    server_bounds,
)
from shadowline.settings import Settings

log = logging.getLogger("shadowline.instance")


async def _wait_for_database(instance: Instance, patience: float) -> None:
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(Unavailable),
        wait=wait_exponential(multiplier=0.2, max=2),
        stop=stop_after_delay(patience),
        reraise=True,
    ):
        with attempt:
            await instance.store.head()


async def _open_store(instance: Instance, patience: float) -> None:
    """Wait for the database; then refuse a store restored as another cluster than ours (a
    restored copy never runs beside its origin as a second master: domain.restore)."""
    await _wait_for_database(instance, patience)
    refusal = start_refusal(await restored_as(instance.engine), instance.settings.cluster)
    if refusal is not None:
        raise BackupRefused(refusal)


async def _migrate(url: str, patience: float) -> None:
    """Migrate, retrying while the database cannot be reached (it may be starting too)."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((OSError, OperationalError, InterfaceError)),
        wait=wait_exponential(multiplier=0.2, max=2),
        stop=stop_after_delay(patience),
        before_sleep=lambda state: log.warning(
            "database not reachable yet (%s); retrying", state.outcome and state.outcome.exception()
        ),
        reraise=True,
    ):
        with attempt:
            await asyncio.to_thread(upgrade, url)


async def _anchor_signatures(instance: Instance) -> None:
    """A writable role whose log ends in an unsigned event (written before a cluster secret
    was set, or by an older version) appends a signed `SigningStarted`: from then on the head
    is always signed, so a log re-chained and stripped of its signatures by a database
    superuser fails /audit/verify instead of passing as one that was never signed."""
    if instance.settings.cluster_secret is None or instance.ha.role.role == "shadow":
        return
    if await instance.store.head_signed() is False:
        start = instance.writer.position + 1
        await instance.writer.submit(
            RecordEvent(
                "SigningStarted",
                {"from_position": start},
                {"actor": instance.settings.instance, "request_id": str(uuid.uuid4())},
            )
        )
        log.info("events are signed from position %d on (SigningStarted)", start)


def _helpers(instance: Instance) -> list[asyncio.Task[None]]:
    """The background work of every role (the supervisor runs the role's own)."""
    return [
        asyncio.create_task(instance.snapshotter.run(), name="snapshotter"),
        asyncio.create_task(instance.auth.run(), name="users-refresh"),
        asyncio.create_task(instance.feed.run(), name="monitoring-feed"),
        # Role-change hooks left pending (or running) by the last run first, then each new one.
        asyncio.create_task(instance.hooks.run(), name="role-change-hooks"),
        asyncio.create_task(instance.switches.run(), name="scheduled-switch"),
    ]


@contextlib.asynccontextmanager
async def running(instance: Instance, *, migrate: bool = True) -> AsyncIterator[Instance]:
    """Start the instance's background work; on exit drain the writer and stop the rest."""
    settings = instance.settings
    patience = settings.startup_patience
    if migrate:
        await _migrate(settings.database_url, patience)
    await _open_store(instance, patience)
    password = settings.admin_password
    if password is not None and await instance.users.bootstrap_admin(password.get_secret_value()):
        log.info("created user 'admin' (role admin) from SHADOWLINE_ADMIN_PASSWORD")
    await instance.ha.load()
    if instance.ha.role.role == "master":
        # It may have been replaced while it was down: no writes, no relay, until the lease
        # watcher has checked the peer and the heartbeats for a newer epoch.
        instance.failover.fence_at_start()  # shadowline_fencings_total{reason="starting"}
    await instance.writer.load()
    await instance.auth.refresh()
    await instance.service.apply_local()
    writer = asyncio.create_task(instance.writer.run(), name="writer")
    await _anchor_signatures(instance)
    helpers = _helpers(instance)
    await instance.supervisor.reconcile()
    role = instance.service.role
    log.info(
        "instance %s is %s in epoch %d at position %d",
        settings.instance,
        role.role,
        role.epoch,
        instance.writer.position,
    )
    try:
        yield instance
    finally:
        await instance.supervisor.stop()
        await instance.monitor.stop()
        if instance.lease is not instance.broker:
            await instance.lease.close()
        await instance.broker.close()
        instance.writer.close()
        await asyncio.wait_for(writer, timeout=30)
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await instance.store.close()  # the writer's connection, held while it ran
        await instance.engine.dispose()


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM once its own shutdown is done, which would end the process
    before the writer has drained; the signals are handled in `serve` instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


STUCK_AFTER = 20.0  # seconds after a stop signal by which the stop should long be done


def _log_tasks(why: str) -> None:
    """Every task's stack in the log: where a stop that does not end is waiting."""
    stacks = [f"{task!r}: {awaiting(task)}" for task in asyncio.all_tasks()]
    log.error("%s; its %d tasks:\n%s", why, len(stacks), "\n".join(stacks))


def _stop_on_signals(server: uvicorn.Server) -> None:
    loop = asyncio.get_running_loop()

    def stop(signum: signal.Signals) -> None:
        log.info("%s received: stopping intake, finishing in-flight work", signum.name)
        if not server.should_exit:
            loop.call_later(
                STUCK_AFTER, _log_tasks, f"not stopped {STUCK_AFTER:g} s after {signum.name}"
            )
        server.force_exit = server.should_exit and signum == signal.SIGINT
        server.should_exit = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)


def http_config(settings: Settings, app: ASGIApp) -> uvicorn.Config:
    """How the instance serves HTTP (also what the tests of the HTTP limits serve with).

    Not uvicorn's `limit_concurrency`: it counts idle connections too and answers 503 beyond,
    so a flood of idle connections would take `/health` down with it. The guard closes the
    oldest idle connection instead (instance.limits)."""
    room = descriptor_room()
    cap, backlog = server_bounds(settings.http_max_connections, room)
    log.info(
        "HTTP: %d connections at most (asked %d, room for %d by the file-descriptor limit), "
        "request line and headers at most %d bytes, sent within %.1f s",
        cap,
        settings.http_max_connections,
        room,
        settings.http_max_header_bytes,
        settings.http_header_timeout,
    )
    guard = ConnectionGuard(cap, settings.http_max_header_bytes, settings.http_header_timeout)
    return uvicorn.Config(
        app,
        host=settings.bind_host,
        port=settings.bind_port,
        http=guarded_protocol(guard),
        backlog=backlog,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
        lifespan="off",
        # TLS with the instance's own certificate (settings checked that the pair loads).
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
    )


def http_server(config: uvicorn.Config) -> uvicorn.Server:
    return _Server(config)


async def serve(settings: Settings, *, migrate: bool = True) -> None:
    instance = build_instance(settings)
    config = http_config(settings, instance.asgi)
    async with running(instance, migrate=migrate):
        scheme = "HTTPS" if settings.tls_cert else "HTTP"
        log.info(
            "serving %s on %s (advertised as %s)", scheme, settings.http_bind, settings.public_url
        )
        server = http_server(config)
        _stop_on_signals(server)
        await server.serve()
    log.info("stopped cleanly")
