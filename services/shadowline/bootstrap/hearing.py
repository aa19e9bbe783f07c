"""What an instance hears of its cluster, built together: the heartbeat listener (the peers'
heartbeats, bound per peer as the HA record names them), the liveness that publishes this
instance's own heartbeats and holds the lease, and the HA screen's monitoring feed, which gets
the peers' heartbeats from the listener and the instance's own from the liveness (never from a
queue of its own: entrypoints.amqp.heartbeats says why). The heartbeats go out on a connection
of their own (`lease`: adapters.lease_link says why); the peers' come in on the main link."""

from __future__ import annotations

from functools import partial

from shadowline.adapters.broker import BrokerLink, Names
from shadowline.application.database import DatabaseHealth
from shadowline.application.liveness import Liveness
from shadowline.application.monitoring import Monitor
from shadowline.application.roles import CurrentRole
from shadowline.application.status import Identity
from shadowline.domain.roles import Role
from shadowline.entrypoints.amqp.feed import MonitoringFeed
from shadowline.entrypoints.amqp.heartbeats import HeartbeatListener
from shadowline.settings import Settings


def secret_of(settings: Settings) -> str | None:
    return settings.cluster_secret.get_secret_value() if settings.cluster_secret else None


def monitoring_feed(settings: Settings, role: CurrentRole) -> MonitoringFeed:
    """What the HA screen shows of monitoring; a standalone instance has nothing there to hear."""
    return MonitoringFeed(
        settings.amqp_url.get_secret_value(),
        Names(settings.cluster),
        f"shadowline {settings.instance} monitoring feed",
        active=lambda: role.role != "standalone",
        secret=secret_of(settings),
    )


def peers(identity: Identity) -> tuple[str | None, ...]:
    """The instances whose heartbeats this one hears. A master that may write: those its HA
    record names (its shadow), never its own, for its lease (entrypoints.amqp.heartbeats).
    Anyone else, a fenced or starting master above all, every instance's (`*`): a fenced
    master lifts its fence once it has heard no newer master for a takeover delay, and the
    newer one may be an instance its record does not name (its shadow removed meanwhile, or
    promoted and then failed over to a third)."""
    record = identity.record
    named = () if record is None else (record.master_instance, record.shadow_instance)
    state = identity.role.state
    return named if state.role == Role.MASTER and state.fence is None else ("*", *named)


def liveness(
    settings: Settings,
    broker: BrokerLink,
    lease: BrokerLink,
    identity: Identity,
    monitor: Monitor,
    feed: MonitoringFeed,
    database: DatabaseHealth,
) -> Liveness:
    listener = HeartbeatListener(
        instance=settings.instance,
        cluster=settings.cluster,
        secret=secret_of(settings),
        broker=broker,
        peers=partial(peers, identity),
        rejected=monitor.rejected,
        tee=feed.take,
    )
    return Liveness(
        settings,
        lease,
        identity.heartbeat,
        listen=listener.listen,
        follow=listener.follow_peers,
        confirmed=feed.own,
        usable=database.check,
    )
