"""The composition root: the one place that builds concrete objects and wires them together.

Nothing here runs at import time; `build_instance` is called by the entrypoints and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from shadowline.adapters.broker import BrokerLink, Names
from shadowline.adapters.db import create_engine
from shadowline.adapters.ha_repo import HaRepository
from shadowline.adapters.local import LocalConfig, Users
from shadowline.adapters.migrate import current_revision
from shadowline.adapters.resources import load_config_schemas
from shadowline.adapters.store import EventStore
from shadowline.domain.validation import Catalog
from shadowline.instance.auth import Authenticator
from shadowline.instance.ha import HaService
from shadowline.instance.http import create_app
from shadowline.instance.limits import BodyLimit
from shadowline.instance.metrics import Metrics
from shadowline.instance.role import RoleState
from shadowline.instance.roletasks import RoleTasks
from shadowline.instance.service import ConfigService
from shadowline.instance.snapshots import Snapshotter
from shadowline.instance.writer import Writer
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
    asgi: BodyLimit


def build_instance(settings: Settings) -> Instance:
    engine = create_engine(settings.database_url)
    store = EventStore(engine)
    users = Users(engine)
    role = RoleState()
    metrics = Metrics()
    writer = Writer(
        store,
        epoch=lambda: role.epoch,
        batch_max=settings.batch_max,
        on_batch=metrics.observe_batch,
    )
    service = ConfigService(
        catalog=Catalog(load_config_schemas()),
        store=store,
        writer=writer,
        local=LocalConfig(engine),
        role=role,
    )
    auth = Authenticator(users)
    roles: list[RoleTasks] = []  # filled below: HaService and RoleTasks refer to each other

    async def role_changed() -> None:
        await roles[0].reconcile()

    ha = HaService(
        settings=settings,
        repo=HaRepository(engine),
        store=store,
        writer=writer,
        role=role,
        revision=lambda: current_revision(settings.database_url),
        on_change=role_changed,
    )
    broker = BrokerLink(
        settings.amqp_url.get_secret_value(),
        Names(settings.cluster),
        f"shadowline {settings.instance}",
    )
    roles.append(
        RoleTasks(
            instance=settings.instance,
            ha=ha,
            broker=broker,
            store=store,
            writer=writer,
            metrics=metrics,
        )
    )
    app = create_app(service=service, ha=ha, auth=auth, metrics=metrics, settings=settings)
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
        asgi=BodyLimit(app, settings.max_body_bytes),
    )
