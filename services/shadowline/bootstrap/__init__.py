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

from shadowline.adapters import node_probe
from shadowline.adapters.broker import BrokerLink
from shadowline.adapters.db import create_engine
from shadowline.adapters.lease_link import LeaseLink
from shadowline.adapters.local import Users
from shadowline.adapters.metrics import Metrics, Scrape
from shadowline.adapters.migrate import current_revision
from shadowline.adapters.passwords import VerifiedCache, dummy_hash
from shadowline.adapters.store import EventStore
from shadowline.adapters.switch_repo import SwitchSchedules
from shadowline.application.auth import Authenticator, LoginThrottle
from shadowline.application.failover import Failover
from shadowline.application.ha import HaService
from shadowline.application.hooks import Hooks
from shadowline.application.monitoring import Monitor
from shadowline.application.preflight import Preflight
from shadowline.application.service import ConfigService
from shadowline.application.snapshots import Snapshotter
from shadowline.application.supervisor import Supervisor, wanted_tasks
from shadowline.application.switch_schedule import SwitchScheduler
from shadowline.application.writer import Writer
from shadowline.bootstrap import hearing
from shadowline.bootstrap.hearing import secret_of
from shadowline.bootstrap.wiring import (
    Wing,
    build_core,
    build_wing,
    config_side,
    default_broker,
    role_task_factories,
)
from shadowline.domain.commands import RecordEvent
from shadowline.entrypoints.amqp.feed import MonitoringFeed
from shadowline.entrypoints.app import create_app
from shadowline.entrypoints.http.limits import BodyLimit
from shadowline.entrypoints.http.peer import PeerAnswers
from shadowline.settings import Settings

__all__ = ["Instance", "build_instance", "default_broker"]


def _preflight(settings: Settings, ha: HaService, feed: MonitoringFeed) -> Preflight:
    nodes = partial(
        node_probe.answers,
        settings.amqp_url.get_secret_value(),
        settings.broker_connect_timeout,
        f"shadowline {settings.instance} preflight",
    )
    return Preflight(
        ha=ha, feed=feed, nodes=nodes, revision=partial(current_revision, settings.database_url)
    )


def _switches(wing: Wing, writer: Writer, engine: AsyncEngine) -> SwitchScheduler:
    """Scheduled switches of roles; each taken or cancelled is an audited HA event."""

    async def record(type_: str, data: dict[str, Any], actor: str) -> None:
        await writer.submit(RecordEvent(type_, data, {"actor": actor}))

    switches = SwitchScheduler(wing.failover, SwitchSchedules(engine), record)
    wing.ha.identity.scheduled = switches.view
    return switches


@dataclass(frozen=True)
class Instance:
    ha: HaService
    supervisor: Supervisor
    failover: Failover
    monitor: Monitor
    broker: BrokerLink
    lease: BrokerLink  # the heartbeats' own connection (adapters.lease_link)
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
    hooks: Hooks
    switches: SwitchScheduler


# Over 50 lines: it names every part of an instance once, in the order they depend on each
# other; split up, that order would be spread over several functions.
def build_instance(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    store: EventStore | None = None,
    broker: BrokerLink | None = None,
) -> Instance:
    """The instance over the real adapters, or over the ones given (twins in tests: a broker
    given carries the heartbeats too)."""
    engine = engine if engine is not None else create_engine(settings.database_url)
    store = store if store is not None else EventStore(engine)
    lease: BrokerLink
    if broker is None:
        broker = default_broker(settings)
        lease = LeaseLink(broker)
    else:
        lease = broker
    core = build_core(settings, store, broker)
    feed = hearing.monitoring_feed(settings, core.role)
    wing = build_wing(settings, core, engine, store, broker, lease, feed)
    service, config_commands = config_side(settings, core, wing.gate, engine, store, broker)
    tasks = role_task_factories(settings, core, wing, store, broker, config_commands)
    users = Users(engine)
    throttle = LoginThrottle(settings.login_max_failures, settings.login_failure_window)
    auth = Authenticator(users, VerifiedCache(), dummy_hash, throttle=throttle)
    app = create_app(
        service=service,
        ha=wing.ha,
        auth=auth,
        metrics=Scrape(core.metrics, wing.liveness),
        settings=settings,
        failover=wing.failover,
        feed=feed,
    )
    app.state.alerts = core.monitor  # GET /alerts and the screen (entrypoints.deps.Alerts)
    app.state.preflight = _preflight(settings, wing.ha, feed)  # GET /ha/preflight
    app.state.switches = _switches(wing, core.writer, engine)  # POST, DELETE /ha/switch-roles
    return Instance(
        ha=wing.ha,
        supervisor=Supervisor(tasks, partial(wanted_tasks, wing.ha), wing.changes),
        failover=wing.failover,
        monitor=core.monitor,
        broker=broker,
        lease=lease,
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
            PeerAnswers(app, secret_of(settings), settings.cluster, settings.instance),
            settings.max_body_bytes,
        ),
        feed=feed,
        hooks=wing.hooks,
        switches=app.state.switches,
    )
