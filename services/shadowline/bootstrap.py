"""The composition root: the one place that builds concrete objects and wires them together.

Nothing here runs at import time; `build_instance` is called by the runtime and the tests. It
builds in dependency order, each object complete when its constructor returns; the adapters it
talks through (engine, store, broker) are parameters, so a test can build the real wiring over
twins of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from shadowline.adapters.broker import BrokerLink, Names
from shadowline.adapters.command_log import CommandLog
from shadowline.adapters.db import create_engine
from shadowline.adapters.ha_repo import HaRepository
from shadowline.adapters.local import LocalConfig, Users
from shadowline.adapters.metrics import Metrics, Scrape
from shadowline.adapters.migrate import current_revision
from shadowline.adapters.passwords import VerifiedCache, dummy_hash
from shadowline.adapters.peer import PeerClient
from shadowline.adapters.resources import load_config_schemas
from shadowline.adapters.store import EventStore
from shadowline.application import role_tasks
from shadowline.application.auth import Authenticator
from shadowline.application.failover import Failover
from shadowline.application.gate import CommitGate
from shadowline.application.ha import HaService
from shadowline.application.liveness import Liveness
from shadowline.application.monitoring import Monitor
from shadowline.application.relay import Relay
from shadowline.application.replica import Replicator
from shadowline.application.service import ConfigService
from shadowline.application.snapshots import Snapshotter
from shadowline.application.supervisor import RoleChanges, RoleTask, Supervisor, wanted_tasks
from shadowline.application.writer import Writer
from shadowline.domain.roles import RoleState
from shadowline.domain.validation import Catalog
from shadowline.entrypoints.amqp.config_commands import (
    CommandReader,
    ConfigCommands,
    command_schemas,
)
from shadowline.entrypoints.amqp.feed import MonitoringFeed
from shadowline.entrypoints.amqp.promote import PromoteCommands
from shadowline.entrypoints.http.api import create_app
from shadowline.entrypoints.http.limits import BodyLimit
from shadowline.entrypoints.http.peer import PeerAnswers
from shadowline.settings import Settings


@dataclass(frozen=True)
class Instance:
    ha: HaService
    supervisor: Supervisor
    failover: Failover
    monitor: Monitor
    broker: BrokerLink
    settings: Settings
    engine: AsyncEngine
    store: EventStore
    users: Users
    writer: Writer
    service: ConfigService
    auth: Authenticator
    snapshotter: Snapshotter
    metrics: Metrics
    app: FastAPI
    asgi: BodyLimit  # around PeerAnswers around the app
    feed: MonitoringFeed


def heartbeat_of(ha: HaService) -> dict[str, Any]:
    """What an instance says about itself in each heartbeat."""
    record, role = ha.record, ha.role
    peer = peer_url = None
    if record is not None and role.role == "master":
        peer, peer_url = record.shadow_instance, record.shadow_url
    elif record is not None and role.role == "shadow":
        peer, peer_url = record.master_instance, record.master_url
    return {
        "instance": ha.instance,
        "role": role.shown,
        "epoch": role.epoch,
        "committed": ha.position,
        "applied": ha.position,
        "replication": ha.gate.replication if role.role == "master" else None,
        "acked": ha.gate.acked if role.role == "master" else None,
        "peer": peer,
        "peer_url": peer_url,
        "maintenance": bool(record and record.maintenance),
    }


def _secret(settings: Settings) -> str | None:
    return settings.cluster_secret.get_secret_value() if settings.cluster_secret else None


def default_broker(settings: Settings) -> BrokerLink:
    return BrokerLink(
        settings.amqp_url.get_secret_value(),
        Names(settings.cluster),
        f"shadowline {settings.instance}",
        secret=_secret(settings),
    )


@dataclass(frozen=True)
class _Core:
    """What serves configuration, before any HA: store, writer, monitoring."""

    role: RoleState
    metrics: Metrics
    monitor: Monitor
    writer: Writer
    catalog: Catalog


def _core(settings: Settings, store: EventStore, broker: BrokerLink) -> _Core:
    role = RoleState()
    metrics = Metrics()
    monitor = Monitor(
        instance=settings.instance,
        publisher=broker,
        counts=metrics,
        is_master=lambda: role.role == "master",
    )
    writer = Writer(
        store,
        epoch=lambda: role.epoch,
        writable=lambda: role.writable,
        batch_max=settings.batch_max,
        on_batch=metrics.observe_batch,
        secret=_secret(settings),
        cluster=settings.cluster,
        on_commit=[monitor.config_changed],
    )
    return _Core(role, metrics, monitor, writer, Catalog(load_config_schemas()))


def _gate(settings: Settings, core: _Core, liveness: Liveness) -> CommitGate:
    role, monitor = core.role, core.monitor
    return CommitGate(
        timeout=settings.sync_timeout,
        lease_valid=liveness.lease_valid,
        wait_lease=liveness.wait_lease,
        fenced=lambda: role.fenced is not None,
        announce=liveness.beat_once,
        alert=lambda name, message: monitor.alert(name, message, {}),
    )


def _new_replica(ha: HaService, core: _Core, store: EventStore) -> tuple[Replicator, PeerClient]:
    """A shadow's replicator over a client of its master, as the HA record names it now."""
    record = ha.record
    assert record is not None and record.master_url is not None
    peer = ha.peer(record.master_url, record.master_instance)
    replicator = Replicator(
        writer=core.writer,
        store=store,
        peer=peer,
        alert=core.monitor.alert,
        secret=ha.secret(),
        cluster=ha.settings.cluster,
        catalog=core.catalog,
        rejected=core.monitor.rejected,
        on_applied=core.metrics.observe_replicated,
    )
    return replicator, peer


def _role_tasks(
    settings: Settings,
    core: _Core,
    *,
    store: EventStore,
    broker: BrokerLink,
    ha: HaService,
    liveness: Liveness,
    failover: Failover,
    config_commands: ConfigCommands,
) -> dict[str, RoleTask]:
    """One factory per role task (supervisor.wanted_tasks says which run in which role)."""
    new_relay = partial(Relay, store, core.writer, broker, on_cursor=core.metrics.observe_published)
    promote = PromoteCommands(
        instance=settings.instance,
        broker=broker,
        failover=failover,
        counts=core.metrics,
        alerts=core.monitor,
    )
    return {
        "heartbeats": partial(role_tasks.heartbeats, broker=broker, liveness=liveness),
        "commands": promote.run,
        "lease": partial(role_tasks.lease, failover=failover),
        "config-commands": partial(
            role_tasks.consuming,
            broker=broker,
            what="consuming config commands",
            consume=config_commands.run,
        ),
        "peer-watch": partial(
            role_tasks.peer_watch,
            ha=ha,
            position=lambda: core.writer.position,
            monitor=core.monitor,
        ),
        "relay": partial(role_tasks.relay, broker=broker, ha=ha, new_relay=new_relay),
        "replica": partial(
            role_tasks.replica,
            broker=broker,
            ha=ha,
            instance=settings.instance,
            new_replica=partial(_new_replica, ha, core, store),
        ),
    }


def build_instance(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    store: EventStore | None = None,
    broker: BrokerLink | None = None,
) -> Instance:
    """The instance over the real adapters, or over the ones given (twins in tests)."""
    engine = engine if engine is not None else create_engine(settings.database_url)
    store = store if store is not None else EventStore(engine)
    broker = broker if broker is not None else default_broker(settings)
    core = _core(settings, store, broker)
    monitor = core.monitor
    # The heartbeat says what the HA service and its gate are, and the gate's lease rests on the
    # heartbeats being confirmed: the one cycle of the wiring, closed by this late lookup.
    liveness = Liveness(settings, broker, lambda: heartbeat_of(ha), rejected=monitor.rejected)
    gate = _gate(settings, core, liveness)
    changes = RoleChanges()
    ha = HaService(
        settings=settings,
        repo=HaRepository(engine),
        store=store,
        writer=core.writer,
        role=core.role,
        revision=lambda: current_revision(settings.database_url),
        on_change=changes.fire,
        gate=gate,
        rejected=monitor.rejected,
        alert=monitor.alert,
    )
    failover = Failover(
        settings=settings,
        ha=ha,
        store=store,
        writer=core.writer,
        liveness=liveness,
        gate=gate,
        alert=monitor.alert,
        publish=monitor.publish,
        metrics=core.metrics,
    )
    service = ConfigService(
        catalog=core.catalog,
        store=store,
        writer=core.writer,
        local=LocalConfig(engine),
        role=core.role,
        gate=gate,
    )
    config_commands = ConfigCommands(
        service=service,
        commands=CommandLog(engine),
        broker=broker,
        reader=CommandReader(command_schemas(), settings.max_body_bytes, settings.publishers),
        alert=monitor.alert,
    )
    tasks = _role_tasks(
        settings,
        core,
        store=store,
        broker=broker,
        ha=ha,
        liveness=liveness,
        failover=failover,
        config_commands=config_commands,
    )
    supervisor = Supervisor(tasks, partial(wanted_tasks, ha), changes)
    users = Users(engine)
    auth = Authenticator(users, VerifiedCache(), dummy_hash)
    # What the HA screen shows of monitoring; a standalone instance has nothing there to hear.
    feed = MonitoringFeed(
        settings.amqp_url.get_secret_value(),
        Names(settings.cluster),
        f"shadowline {settings.instance} monitoring feed",
        active=lambda: core.role.role != "standalone",
        secret=_secret(settings),
    )
    app = create_app(
        service=service,
        ha=ha,
        auth=auth,
        metrics=Scrape(core.metrics, liveness),
        settings=settings,
        failover=failover,
        feed=feed,
    )
    return Instance(
        ha=ha,
        supervisor=supervisor,
        failover=failover,
        monitor=monitor,
        broker=broker,
        settings=settings,
        engine=engine,
        store=store,
        users=users,
        writer=core.writer,
        service=service,
        auth=auth,
        snapshotter=Snapshotter(store, core.writer, settings.snapshot_interval),
        metrics=core.metrics,
        app=app,
        asgi=BodyLimit(
            PeerAnswers(app, _secret(settings), settings.cluster, settings.instance),
            settings.max_body_bytes,
        ),
        feed=feed,
    )
