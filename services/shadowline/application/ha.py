"""HA setup and status: enable, join, confirm, forget, maintenance, and the master's view of its
shadow. Each change of role is one store transaction (domain.ha.RoleChange).

The broker-facing work (relay, replication) runs in tasks that the supervisor starts and stops
to match the role; this module decides the role changes and records them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from shadowline import __version__
from shadowline.application import verify
from shadowline.application.gate import CommitGate
from shadowline.application.ports.ha import HaRepo, Peers
from shadowline.application.ports.monitoring import AlertSink
from shadowline.application.ports.peer import Peer
from shadowline.application.ports.store import EventStore
from shadowline.application.replica import Replicator
from shadowline.application.role_commit import ChangeAt, RoleCommits
from shadowline.application.shadow_reports import ShadowReports
from shadowline.application.status import Identity, Whoami, master_side, shadow_doc
from shadowline.application.supervisor import Running
from shadowline.application.writer import Writer
from shadowline.domain.commands import RecordEvent
from shadowline.domain.errors import Conflict, Forbidden, PeerRefused
from shadowline.domain.ha import HaRecord, RoleChange, handshake_problem
from shadowline.domain.hooks import Cause
from shadowline.domain.records import Head
from shadowline.domain.roles import Role
from shadowline.settings import Settings

log = logging.getLogger(__name__)


class HaService:
    def __init__(
        self,
        *,
        settings: Settings,
        repo: HaRepo,
        store: EventStore,
        writer: Writer,
        identity: Identity,
        peers: Peers,
        revision: Callable[[], Awaitable[str | None]],
        on_change: Callable[[], Awaitable[None]],
        gate: CommitGate,
        alert: AlertSink = lambda name, message, details: None,
        replicas: Running[Replicator] | None = None,
    ) -> None:
        self.gate = gate
        self._settings = settings
        self.repo = repo
        self._store = store
        self._writer = writer
        self.identity = identity
        self.role = identity.role
        self._peers = peers
        self._revision = revision
        self._on_change = on_change
        secret = settings.cluster_secret.get_secret_value() if settings.cluster_secret else None
        self._commits = RoleCommits(store, writer, repo, settings.cluster, secret)
        self.shadow = ShadowReports(repo=repo, store=store, writer=writer, gate=gate, alert=alert)
        self.replicas = replicas if replicas is not None else Running()  # the shadow's

    @property
    def record(self) -> HaRecord | None:
        """The HA record as last loaded (kept by the identity, which heartbeats read)."""
        return self.identity.record

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def instance(self) -> str:
        return self._settings.instance

    @property
    def position(self) -> int:
        return self._writer.position

    def whoami(self) -> Whoami:
        """Who this instance is now: the one source of heartbeats, role.changed and GET /ha."""
        return self.identity.now()

    async def load(self, *, unfence: bool = False) -> HaRecord:
        """Read the record and take its role and epoch (`unfence`: in the same step, so a
        rejoined master is never seen writable in between)."""
        record = self.identity.record = await self.repo.load()
        state = self.role.state.unfenced() if unfence else self.role.state
        self.role.set(
            replace(
                state,
                role=Role(record.role),
                epoch=record.epoch,
                master_url=record.master_url if record.role == Role.SHADOW else None,
            )
        )
        confirmed = record.role == Role.MASTER and record.shadow_state == "confirmed"
        if confirmed != self.gate.enabled:
            self.gate.configure(enabled=confirmed, acked=record.shadow_position or 0)
        return record

    def secret(self) -> str:
        if self._settings.cluster_secret is None:
            raise Conflict("HA needs SHADOWLINE_CLUSTER_SECRET (the same on master and shadow)")
        return self._settings.cluster_secret.get_secret_value()

    def peer(self, url: str, instance: str | None = None, timeout: float = 10.0) -> Peer:
        """A client for the instance at `url`; when `instance` is given, only an answer of
        that instance counts (a genuine instance at the wrong address is not the peer)."""
        self.secret()
        return self._peers(url, instance, timeout)

    async def changed(self, sentence: str, *, unfence: bool = False) -> None:
        log.info(sentence)
        await self.load(unfence=unfence)
        await self._on_change()

    async def commit(self, change_at: ChangeAt) -> tuple[Head, int]:
        """Commit a role change in one transaction (application.role_commit)."""
        return await self._commits.commit(change_at, self.role.epoch)

    # -- on the master -------------------------------------------------------------------------

    async def enable(self, auto_confirm: bool, actor: str) -> dict[str, Any]:
        self.secret()
        if self.role.role == Role.MASTER:
            await self.repo.update(auto_confirm=auto_confirm)
        elif self.role.role == Role.STANDALONE:
            change = RoleChange(
                Role.MASTER, frozenset({Role.STANDALONE}), ha={"auto_confirm": auto_confirm},
                cause=Cause.ENABLE,
            )  # fmt: skip
            event = ("HaEnabled", {"master": self.instance}, {"actor": actor})
            await self.commit(lambda head: (change, event))
        else:
            raise Conflict(f"HA can be enabled on a standalone instance, not on a {self.role.role}")
        await self.changed(
            f"HA enabled on {self.instance}: it is master (auto-confirm {auto_confirm})"
        )
        # A master acknowledges writes only with a lease: answer once the first heartbeat is
        # confirmed (or the lease time has passed), so writes right after this do not get 503.
        await self.gate.wait_lease(self._settings.lease)
        return await self.status()

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        """A shadow asks to join (its operator gave us one of our admins' credentials)."""
        if self.role.role != Role.MASTER:
            raise Conflict(f"{self.instance} is {self.role.role}, not a master with HA enabled")
        if body.get("cluster") != self._settings.cluster:
            raise Conflict(
                f"cluster mismatch: master is in {self._settings.cluster!r}, shadow in {body.get('cluster')!r}"
            )
        problem = handshake_problem(
            __version__, await self._revision(), str(body.get("version")), body.get("revision")
        )
        if problem:
            raise Conflict(problem)
        if body.get("instance") == self.instance:
            raise Conflict(
                "an instance cannot be its own shadow (give the shadow another SHADOWLINE_INSTANCE)"
            )
        assert self.record is not None
        state = await self.repo.register_shadow(
            body["instance"], body["url"], self.record.auto_confirm
        )
        self.shadow.joined()
        await self.changed(f"shadow {body['instance']} joined ({state})")
        if state == "confirmed":
            await self._start_relay_at_head()
        return {"master": self.instance, "epoch": self.role.epoch, "state": state}

    async def confirm(self, shadow: str | None, actor: str) -> dict[str, Any]:
        if self.role.role != Role.MASTER:
            raise Conflict(f"only a master confirms a shadow; this instance is {self.role.role}")
        confirmed = await self.repo.confirm_shadow(shadow)
        await self._record("ShadowConfirmed", {"shadow": confirmed}, actor)
        await self._start_relay_at_head()
        await self.changed(f"shadow {confirmed} confirmed by {actor}")
        return await self.status()

    async def _record(self, type_: str, data: dict[str, Any], actor: str) -> None:
        await self._writer.submit(RecordEvent(type_, data, {"actor": actor}))

    async def _start_relay_at_head(self) -> None:
        # The shadow's image is taken after this point, so older events need not be published.
        await self._store.set_relay_cursor(self._writer.position)

    async def forget(self, actor: str) -> dict[str, Any]:
        if self.role.role != Role.MASTER:
            raise Conflict(
                f"only a master has a shadow to remove; this instance is {self.role.role}"
            )
        removed = await self.repo.forget_shadow()
        self.shadow.forgotten()
        await self._record("ShadowRemoved", {"shadow": removed}, actor)
        await self.changed(f"shadow {removed} removed by {actor}; a new shadow may join")
        return {"removed": removed}

    async def shadow_ack(
        self,
        instance: str,
        position: int,
        chain: bytes | None = None,
        diverged: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A shadow reports what it applied (application.shadow_reports)."""
        record = self.record
        if self.role.role != Role.MASTER or record is None or record.shadow_instance != instance:
            raise Forbidden(f"{instance!r} is not the shadow of this master")
        await self.shadow.report(instance, position, chain, diverged)
        return {
            "state": record.shadow_state,
            "position": self._writer.position,
            "epoch": self.role.epoch,
            "replication": self.gate.replication,
        }

    async def maintenance(self, on: bool, actor: str) -> dict[str, Any]:
        """Pause (or resume) automatic failover: the master's heartbeats carry the flag."""
        if self.role.role != Role.MASTER:
            raise Conflict(
                f"maintenance mode is set on the master; this instance is {self.role.role}"
            )
        await self.repo.update(maintenance=on)
        await self.changed(
            f"maintenance mode {'on' if on else 'off'} by {actor}: automatic failover "
            f"{'paused' if on else 'resumed'}"
        )
        return await self.status()

    # -- on the shadow -------------------------------------------------------------------------

    async def join(self, master_url: str, user: str, password: str) -> dict[str, Any]:
        url = master_url.rstrip("/")
        if self.role.role == Role.SHADOW and self.record and self.record.master_url == url:
            return await self.status()
        if self.role.role != Role.STANDALONE:
            raise Conflict(
                f"only a standalone instance can join as shadow; this one is {self.role.role}"
            )
        if self._writer.position > 0:
            raise Conflict(
                f"this instance already holds {self._writer.position} events of its own; "
                "a new shadow must start from an empty store"
            )
        answer = await self._register_with(master_url, user, password)
        joined = RoleChange(
            Role.SHADOW, frozenset({Role.STANDALONE}), epoch=int(answer["epoch"]),
            ha={"master_instance": answer["master"], "master_url": url}, cause=Cause.JOIN,
        )  # fmt: skip
        await self.repo.change_role(joined)
        await self.changed(
            f"{self.instance} joined {answer['master']} as shadow ({answer['state']})"
        )
        return await self.status()

    async def _register_with(self, master_url: str, user: str, password: str) -> Any:
        peer = self.peer(master_url)
        body = {
            "instance": self.instance,
            "url": self._settings.public_url,
            "version": __version__,
            "revision": await self._revision(),
            "cluster": self._settings.cluster,
        }
        try:
            return await peer.call("POST", "/ha/peer/register", body, auth=(user, password))
        except PeerRefused as error:
            raise Conflict(f"the master refused the join: {error}") from error
        finally:
            await peer.close()

    # -- both ----------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        record = self.record or await self.load()
        me = self.whoami()
        doc = me.status()
        shadow = shadow_doc(me, self.shadow.seen(), self._settings.takeover_delay)
        if shadow is not None:
            doc["replication"], doc["shadow"] = self.gate.replication, shadow
        if self.role.role == Role.SHADOW:
            doc.update(master_side(record, self.replicas.current))
        return doc

    async def chain_at(self, position: int) -> dict[str, Any]:
        return await verify.chain_at(self._store, self._writer.position, self.instance, position)

    async def verify(self) -> dict[str, Any]:
        """Compare chain value and state digest with the peer at the shadow's position."""
        record = self.record or await self.load()
        return await verify.with_peer(self, record)
