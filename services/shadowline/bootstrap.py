"""The composition root: the one place that builds concrete objects and wires them together.

Nothing here runs at import time; `build_instance` is called by the entrypoints and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from shadowline.adapters.db import create_engine
from shadowline.adapters.local import LocalConfig, Users
from shadowline.adapters.resources import load_config_schemas
from shadowline.adapters.store import EventStore
from shadowline.domain.validation import Catalog
from shadowline.instance.auth import Authenticator
from shadowline.instance.http import create_app
from shadowline.instance.limits import BodyLimit
from shadowline.instance.metrics import Metrics
from shadowline.instance.role import RoleState
from shadowline.instance.service import ConfigService
from shadowline.instance.snapshots import Snapshotter
from shadowline.instance.writer import Writer
from shadowline.settings import Settings


@dataclass
class Instance:
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
    app = create_app(
        service=service,
        auth=auth,
        metrics=metrics,
        instance=settings.instance,
        max_body=settings.max_body_bytes,
    )
    return Instance(
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
