"""The composition root: the one place that builds concrete objects and wires them together.

Nothing here runs at import time; `build_instance` is called by the entrypoints and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from shadowline.adapters.broker import BrokerLink, Names
from shadowline.adapters.command_log import CommandLog
from shadowline.adapters.db import create_engine
from shadowline.adapters.ha_repo import HaRepository
from shadowline.adapters.local import LocalConfig, Users
from shadowline.adapters.migrate import current_revision
from shadowline.adapters.resources import load_config_schemas
from shadowline.adapters.store import EventStore
from shadowline.application.auth import Authenticator
from shadowline.application.failover import Failover
from shadowline.application.gate import CommitGate
from shadowline.application.ha import HaService
from shadowline.application.liveness import Liveness
from shadowline.application.metrics import Metrics
from shadowline.application.service import ConfigService
from shadowline.application.snapshots import Snapshotter
from shadowline.application.supervisor import RoleTasks
from shadowline.application.writer import Writer
from shadowline.domain.roles import RoleState
from shadowline.domain.validation import Catalog
from shadowline.entrypoints.amqp.config_commands import (
    CommandReader,
    ConfigCommands,
    command_schemas,
)
from shadowline.entrypoints.amqp.feed import MonitoringFeed
from shadowline.entrypoints.http.api import create_app
from shadowline.entrypoints.http.limits import BodyLimit
from shadowline.entrypoints.http.peer import PeerAnswers
from shadowline.settings import Settings


@dataclass
class Instance:
    ha: HaService
    roles: RoleTasks
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


def build_instance(settings: Settings) -> Instance:
    secret = settings.cluster_secret.get_secret_value() if settings.cluster_secret else None
    engine = create_engine(settings.database_url)
    store = EventStore(engine)
    users = Users(engine)
    role = RoleState()
    metrics = Metrics()
    writer = Writer(
        store,
        epoch=lambda: role.epoch,
        writable=lambda: role.writable,
        batch_max=settings.batch_max,
        on_batch=metrics.observe_batch,
        secret=secret,
        cluster=settings.cluster,
    )
    catalog = Catalog(load_config_schemas())
    service = ConfigService(
        catalog=catalog,
        store=store,
        writer=writer,
        local=LocalConfig(engine),
        role=role,
    )
    auth = Authenticator(users)
    roles: list[RoleTasks] = []  # filled below: HaService and RoleTasks refer to each other

    async def role_changed() -> None:
        await roles[0].changed()

    broker = BrokerLink(
        settings.amqp_url.get_secret_value(),
        Names(settings.cluster),
        f"shadowline {settings.instance}",
        secret=secret,
    )
    liveness = Liveness(  # ha and roles: defined just below
        settings,
        broker,
        lambda: heartbeat_of(ha),
        rejected=lambda source, reason: roles[0].rejected(source, reason),
    )
    metrics.liveness = liveness  # heartbeat ages, read at scrape time
    gate = CommitGate(
        timeout=settings.sync_timeout,
        lease_valid=liveness.lease_valid,
        wait_lease=liveness.wait_lease,
        fenced=lambda: role.fenced is not None,
        announce=liveness.beat_once,
        alert=lambda name, message: roles[0].alert(name, message, {}),
    )
    service.gate = gate
    ha = HaService(
        settings=settings,
        repo=HaRepository(engine),
        store=store,
        writer=writer,
        role=role,
        revision=lambda: current_revision(settings.database_url),
        on_change=role_changed,
        gate=gate,
        rejected=lambda source, reason: roles[0].rejected(source, reason),
        alert=lambda name, message, details: roles[0].alert(name, message, details),
    )
    tasks = RoleTasks(
        instance=settings.instance,
        ha=ha,
        broker=broker,
        store=store,
        writer=writer,
        metrics=metrics,
        catalog=catalog,
    )
    roles.append(tasks)
    failover = Failover(
        settings=settings,
        ha=ha,
        store=store,
        writer=writer,
        liveness=liveness,
        gate=gate,
        alert=tasks.alert,
        publish=tasks.publish,
        metrics=metrics,
    )
    tasks.failover, tasks.liveness = failover, liveness
    tasks.config_commands = ConfigCommands(
        service=service,
        commands=CommandLog(engine),
        broker=broker,
        reader=CommandReader(command_schemas(), settings.max_body_bytes, settings.publishers),
        alert=tasks.alert,
    )
    writer.on_commit.append(tasks.config_changed)
    app = create_app(service=service, ha=ha, auth=auth, metrics=metrics, settings=settings)
    app.state.failover = failover
    # What the HA screen shows of monitoring; a standalone instance has nothing there to hear.
    app.state.feed = feed = MonitoringFeed(
        settings.amqp_url.get_secret_value(),
        Names(settings.cluster),
        f"shadowline {settings.instance} monitoring feed",
        active=lambda: role.role != "standalone",
        secret=secret,
    )
    return Instance(
        ha=ha,
        roles=roles[0],
        settings=settings,
        engine=engine,
        store=store,
        users=users,
        writer=writer,
        service=service,
        auth=auth,
        snapshotter=Snapshotter(store, writer, settings.snapshot_interval),
        metrics=metrics,
        app=app,
        asgi=BodyLimit(
            PeerAnswers(app, secret, settings.cluster, settings.instance), settings.max_body_bytes
        ),
        feed=feed,
    )
