"""The parts of the composition root: the objects that serve configuration (`Core`), the HA
wing (`Wing`), and the role tasks' factories. `shadowline.bootstrap.build_instance` puts them
together; each function builds what it returns completely, from what it is given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from shadowline.adapters.broker import BrokerLink, Names
from shadowline.adapters.command_log import CommandLog
from shadowline.adapters.ha_repo import HaRepository
from shadowline.adapters.local import LocalConfig
from shadowline.adapters.metrics import Metrics
from shadowline.adapters.migrate import current_revision
from shadowline.adapters.peer import PeerClient
from shadowline.adapters.resources import load_config_schemas
from shadowline.adapters.store import EventStore
from shadowline.adapters.tls import client_context
from shadowline.application import role_tasks
from shadowline.application.database import DatabaseHealth
from shadowline.application.failover import Failover
from shadowline.application.gate import CommitGate
from shadowline.application.ha import HaService
from shadowline.application.hooks import Hooks
from shadowline.application.liveness import Liveness
from shadowline.application.monitoring import Monitor
from shadowline.application.ports.ha import PEER_DEADLINE_FACTOR, PEER_TIMEOUT
from shadowline.application.ports.peer import Peer
from shadowline.application.relay import Relay
from shadowline.application.replica import Replicator
from shadowline.application.roles import CurrentRole
from shadowline.application.service import ConfigService
from shadowline.application.status import Identity, ShadowRelation
from shadowline.application.supervisor import RoleChanges, RoleTask, Running
from shadowline.application.writer import Writer
from shadowline.application.writer_guard import StoreGuard
from shadowline.bootstrap import hearing
from shadowline.bootstrap.hearing import secret_of
from shadowline.bootstrap.hooks import build_hooks
from shadowline.domain.validation import Catalog
from shadowline.entrypoints.amqp.config_commands import (
    CommandReader,
    ConfigCommands,
    command_schemas,
)
from shadowline.entrypoints.amqp.feed import MonitoringFeed
from shadowline.entrypoints.amqp.promote import PromoteCommands
from shadowline.entrypoints.amqp.replication import ReplicationQueue
from shadowline.settings import Settings


def _peer_client(
    settings: Settings,
    rejected: Callable[[str, str], None],
    url: str,
    instance: str | None = None,
    timeout: float = PEER_TIMEOUT,
) -> PeerClient:
    """A signed client of the instance at `url` (HaService.peer has checked the secret)."""
    secret = secret_of(settings)
    assert secret is not None
    return PeerClient(
        url,
        secret,
        settings.instance,
        cluster=settings.cluster,
        peer=instance,
        timeout=timeout,
        deadline=PEER_DEADLINE_FACTOR * timeout,
        on_rejected=lambda reason: rejected("peer-answer", reason),
        verify=client_context(settings.ca_file),
    )


def default_broker(settings: Settings) -> BrokerLink:
    return BrokerLink(
        settings.amqp_url.get_secret_value(),
        Names(settings.cluster),
        f"shadowline {settings.instance}",
        secret=secret_of(settings),
        per_node=settings.broker_connect_timeout,
    )


@dataclass(frozen=True)
class Core:
    """What serves configuration, before any HA: store, writer, monitoring."""

    role: CurrentRole
    metrics: Metrics
    monitor: Monitor
    writer: Writer
    catalog: Catalog
    database: DatabaseHealth


def build_core(settings: Settings, store: EventStore, broker: BrokerLink) -> Core:
    role = CurrentRole()
    metrics = Metrics()
    monitor = Monitor(
        instance=settings.instance,
        publisher=broker,
        counts=metrics,
        is_master=lambda: role.role == "master",
        role=lambda: role.shown,
    )
    role.watchers.append(monitor.role_changed)
    database = DatabaseHealth(
        store.probe,
        # as long as a heartbeat may wait for its confirm (application.liveness.beat_once)
        timeout=min(settings.heartbeat_interval, settings.lease / 4),
        alert=lambda name, message: monitor.alert(name, message, {}),
        resolve=monitor.resolve,
        recycle=store.recycle,
    )
    writer = Writer(
        store,
        epoch=lambda: role.epoch,
        writable=lambda: role.writable,
        batch_max=settings.batch_max,
        on_batch=metrics.observe_batch,
        secret=secret_of(settings),
        cluster=settings.cluster,
        on_commit=[monitor.config_changed],
        guard=StoreGuard(database.usable_now, database.failed),
    )
    return Core(role, metrics, monitor, writer, Catalog(load_config_schemas()), database)


def _gate(
    settings: Settings, core: Core, liveness: Liveness, relation: ShadowRelation
) -> CommitGate:
    role, monitor = core.role, core.monitor
    return CommitGate(
        relation=relation,
        timeout=settings.sync_timeout,
        lease_valid=liveness.lease_valid,
        wait_lease=liveness.wait_lease,
        fenced=lambda: role.fenced is not None,
        announce=liveness.beat_once,
        alert=lambda name, message: monitor.alert(name, message, {}),
        resolve=monitor.resolve,
    )


def _new_replica(
    ha: HaService, core: Core, store: EventStore, broker: BrokerLink
) -> tuple[Replicator, ReplicationQueue, Peer]:
    """A shadow's replicator over its replication queue and a client of its master, as the HA
    record names it now."""
    record = ha.record
    assert record is not None and record.master_url is not None
    peer = ha.peer(record.master_url, record.master_instance)
    queue = ReplicationQueue(
        broker, ha.settings.instance, alert=core.monitor.alert, rejected=core.monitor.rejected
    )
    replicator = Replicator(
        feed=queue,
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
    return replicator, queue, peer


def role_task_factories(
    settings: Settings,
    core: Core,
    wing: Wing,
    store: EventStore,
    broker: BrokerLink,
    config_commands: ConfigCommands,
) -> dict[str, RoleTask]:
    """The role tasks, each over what it works with."""
    promote = PromoteCommands(
        instance=settings.instance,
        broker=broker,
        failover=wing.failover,
        counts=core.metrics,
        alerts=core.monitor,
    )
    return role_tasks.role_tasks(
        instance=settings.instance,
        broker=broker,
        ha=wing.ha,
        liveness=wing.liveness,
        failover=wing.failover,
        monitor=core.monitor,
        position=lambda: core.writer.position,
        promote=promote.run,
        config_commands=config_commands.run,
        new_relay=partial(
            Relay, store, core.writer, broker, on_cursor=core.metrics.observe_published
        ),
        new_replica=partial(_new_replica, wing.ha, core, store, broker),
        replicas=wing.replicas,
    )


@dataclass(frozen=True)
class Wing:
    """The HA wing: heartbeats, the commit gate, the HA service and failover."""

    liveness: Liveness
    gate: CommitGate
    changes: RoleChanges
    ha: HaService
    failover: Failover
    replicas: Running[Replicator]
    hooks: Hooks


def build_wing(settings: Settings, core: Core, engine: AsyncEngine, store: EventStore,
          broker: BrokerLink, lease: BrokerLink, feed: MonitoringFeed) -> Wing:  # fmt: skip
    monitor = core.monitor
    # The heartbeat says who this instance is (the identity: role, HA record, head, shadow
    # relation); the gate's lease rests on the heartbeats being confirmed, and the HA service
    # loads the record the identity holds. So the identity comes first.
    relation = ShadowRelation()
    identity = Identity(
        settings.instance,
        core.role,
        lambda: core.writer.position,
        relation,
        broker_node=lambda: broker.node,
    )
    liveness = hearing.liveness(
        settings, broker, lease, identity, core.monitor, feed, core.database
    )
    gate = _gate(settings, core, liveness, relation)
    changes = RoleChanges()  # fired by the HA service, heard by the supervisor
    replicas: Running[Replicator] = Running()  # the shadow's, while its role task runs
    ha = HaService(
        settings=settings,
        repo=HaRepository(engine),
        store=store,
        writer=core.writer,
        identity=identity,
        revision=lambda: current_revision(settings.database_url),
        on_change=changes.fire,
        gate=gate,
        peers=partial(_peer_client, settings, monitor.rejected),
        alert=monitor.alert,
        replicas=replicas,
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
        hooks=(hooks := build_hooks(settings, core, engine)),
    )
    return Wing(liveness, gate, changes, ha, failover, replicas, hooks)


def config_side(
    settings: Settings,
    core: Core,
    gate: CommitGate,
    engine: AsyncEngine,
    store: EventStore,
    broker: BrokerLink,
) -> tuple[ConfigService, ConfigCommands]:
    """The configuration service, and its consumer of config commands on the broker."""
    service = ConfigService(
        catalog=core.catalog,
        store=store,
        writer=core.writer,
        local=LocalConfig(engine),
        role=core.role,
        gate=gate,
    )
    commands = ConfigCommands(
        service=service,
        commands=CommandLog(engine),
        broker=broker,
        reader=CommandReader(command_schemas(), settings.max_body_bytes, settings.publishers),
        alert=core.monitor.alert,
    )
    return service, commands
