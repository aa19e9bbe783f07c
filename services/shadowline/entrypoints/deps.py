"""The typed dependencies of the routes (the JSON API's and the HA screen's): what create_app
was given, read off app.state.

A route names what it needs in its signature (`service: Service`, `ha: HA`), so no route reads
the app's state itself and each can be called with other objects in a test. What the screen
shows of monitoring is typed by what it reads (`Monitoring`), so neither the API nor the screen
imports the AMQP entrypoints (entrypoints.amqp.feed.MonitoringFeed has it).
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry

from shadowline.application.failover import Failover
from shadowline.application.ha import HaService
from shadowline.application.preflight import Preflight
from shadowline.application.service import ConfigService
from shadowline.application.switch_schedule import SwitchScheduler
from shadowline.domain.alerting import AlertBoard
from shadowline.domain.errors import Unavailable
from shadowline.domain.events import Event
from shadowline.domain.records import Image
from shadowline.settings import Settings


class Scraped(Protocol):
    """What GET /metrics renders: a registry whose gauges of state are set just before."""

    @property
    def registry(self) -> CollectorRegistry: ...

    def refresh(self, status: dict[str, Any]) -> None: ...


class Monitoring(Protocol):
    """What the HA screen shows of the cluster's monitoring exchange, as heard (`Heard`s)."""

    connected: bool
    received: int
    malformed: int

    def latest_heartbeats(self) -> list[Any]: ...

    def recent_heartbeats(self, count: int) -> list[Any]: ...

    def recent_events(self) -> list[Any]: ...

    def watchdogs_seen(self) -> list[Any]: ...


class AlertLog(Protocol):
    """This instance's alerts with their state (application.monitoring.Monitor has them)."""

    @property
    def board(self) -> AlertBoard: ...

    def alerts(self) -> list[dict[str, Any]]: ...


class LogReads(Protocol):
    """What the HA peer routes read of the event store beyond what ConfigService reads."""

    async def image(self) -> Image: ...

    async def quarantined(self) -> list[dict[str, Any]]: ...

    async def promotion_after(self, epoch: int) -> Event | None: ...


# The providers are `async def` though none awaits: FastAPI runs a plain `def` dependency in
# its thread pool, and that hop per request (a thread handoff and an extra turn of the event
# loop) cost more CPU than the whole rest of the dependency solving (about 0.16 ms a PUT).


async def _service(request: Request) -> ConfigService:
    found: ConfigService = request.app.state.service
    return found


async def _log(request: Request) -> LogReads:
    # The service's own store: the adapter has these reads, the application's port does not.
    found: LogReads = request.app.state.service.store
    return found


async def _ha(request: Request) -> HaService:
    found: HaService = request.app.state.ha
    return found


async def _failover(request: Request) -> Failover:
    found: Failover = request.app.state.failover
    return found


async def _settings(request: Request) -> Settings:
    found: Settings = request.app.state.settings
    return found


async def _metrics(request: Request) -> Scraped:
    found: Scraped = request.app.state.metrics
    return found


async def _feed(request: Request) -> Monitoring | None:
    # None: an app built without one (a test's), whose screen shows no monitoring.
    found: Monitoring | None = getattr(request.app.state, "feed", None)
    return found


async def _alerts(request: Request) -> AlertLog | None:
    # None: an app built without one (a test's), which has raised no alert.
    found: AlertLog | None = getattr(request.app.state, "alerts", None)
    return found


async def _preflight(request: Request) -> Preflight:
    found: Preflight | None = getattr(request.app.state, "preflight", None)
    if found is None:  # an app built without one (a test's)
        raise Unavailable("this instance was built without a preflight")
    return found


async def _switches(request: Request) -> SwitchScheduler:
    found: SwitchScheduler | None = getattr(request.app.state, "switches", None)
    if found is None:  # an app built without one (a test's)
        raise Unavailable("this instance was built without a switch scheduler")
    return found


Service = Annotated[ConfigService, Depends(_service)]
Log = Annotated[LogReads, Depends(_log)]
HA = Annotated[HaService, Depends(_ha)]
FailoverDep = Annotated[Failover, Depends(_failover)]
SettingsDep = Annotated[Settings, Depends(_settings)]
Metrics = Annotated[Scraped, Depends(_metrics)]
Feed = Annotated[Monitoring | None, Depends(_feed)]
Alerts = Annotated[AlertLog | None, Depends(_alerts)]
PreflightDep = Annotated[Preflight, Depends(_preflight)]
Switches = Annotated[SwitchScheduler, Depends(_switches)]
