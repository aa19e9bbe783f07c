"""HA setup and status: enable, join, confirm, forget, the master's view of its shadow, verify.

The broker-facing work (relay, replication) runs in tasks that `RoleTasks` starts and stops to
match the role; this module decides the role changes and records them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shadowline import __version__
from shadowline.adapters.ha_repo import HaRecord, HaRepository
from shadowline.adapters.peer import PeerClient, PeerRefused
from shadowline.adapters.store import EventStore
from shadowline.application.gate import CommitGate
from shadowline.application.writer import Writer
from shadowline.domain.commands import RecordEvent
from shadowline.domain.errors import Conflict, Forbidden, NotFound, Unavailable
from shadowline.domain.ha import handshake_problem, shadow_state
from shadowline.domain.roles import RoleState
from shadowline.domain.state import digest
from shadowline.settings import Settings

log = logging.getLogger(__name__)


class HaService:
    def __init__(
        self,
        *,
        settings: Settings,
        repo: HaRepository,
        store: EventStore,
        writer: Writer,
        role: RoleState,
        revision: Callable[[], Awaitable[str | None]],
        on_change: Callable[[], Awaitable[None]],
        gate: CommitGate,
        rejected: Callable[[str, str], None] = lambda source, reason: None,
        alert: Callable[[str, str, dict[str, Any]], None] = lambda name, message, details: None,
    ) -> None:
        self.gate = gate
        self._rejected = rejected
        self._alert = alert
        self._settings = settings
        self.repo = repo
        self._store = store
        self._writer = writer
        self.role = role
        self._revision = revision
        self._on_change = on_change
        self.record: HaRecord | None = None
        self.shadow_seen: float | None = None  # monotonic, on the master
        self._persisted_at = 0.0
        self.shadow_position = 0
        self.replica: Any = None  # the shadow's Replicator while it runs
        # On the master: set when the shadow's log differs from ours (its report says so, or
        # the chain it reports at its position is not ours); its acks then count for nothing.
        self.shadow_diverged: dict[str, Any] | None = None

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def instance(self) -> str:
        return self._settings.instance

    @property
    def position(self) -> int:
        return self._writer.position

    async def load(self) -> HaRecord:
        self.record = await self.repo.load()
        self.role.role, self.role.epoch = self.record.role, self.record.epoch
        self.role.master_url = self.record.master_url if self.record.role == "shadow" else None
        confirmed = self.record.role == "master" and self.record.shadow_state == "confirmed"
        if confirmed != self.gate.enabled:
            self.gate.configure(enabled=confirmed, acked=self.record.shadow_position or 0)
        return self.record

    def secret(self) -> str:
        if self._settings.cluster_secret is None:
            raise Conflict("HA needs SHADOWLINE_CLUSTER_SECRET (the same on master and shadow)")
        return self._settings.cluster_secret.get_secret_value()

    def peer(self, url: str, instance: str | None = None, timeout: float = 10.0) -> PeerClient:
        """A client for the instance at `url`; when `instance` is given, only an answer of
        that instance counts (a genuine instance at the wrong address is not the peer)."""
        rejected = self._rejected
        return PeerClient(
            url,
            self.secret(),
            self._settings.instance,
            cluster=self._settings.cluster,
            peer=instance,
            timeout=timeout,
            deadline=3 * timeout,
            on_rejected=lambda reason: rejected("peer-answer", reason),
        )

    async def changed(self, sentence: str) -> None:
        log.info(sentence)
        await self.load()
        await self._on_change()

    # -- on the master -------------------------------------------------------------------------

    async def enable(self, auto_confirm: bool, actor: str) -> dict[str, Any]:
        self.secret()
        if self.role.role == "master":
            await self.repo.update(auto_confirm=auto_confirm)
        elif self.role.role == "standalone":
            await self.repo.set_role("master", expect={"standalone"}, auto_confirm=auto_confirm)
            await self._writer.submit(
                RecordEvent("HaEnabled", {"master": self._settings.instance}, {"actor": actor})
            )
        else:
            raise Conflict(f"HA can be enabled on a standalone instance, not on a {self.role.role}")
        await self.changed(
            f"HA enabled on {self._settings.instance}: it is master (auto-confirm {auto_confirm})"
        )
        # A master acknowledges writes only with a lease: answer once the first heartbeat is
        # confirmed (or the lease time has passed), so writes right after this do not get 503.
        await self.gate.wait_lease(self._settings.lease)
        return await self.status()

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        """A shadow asks to join (its operator gave us one of our admins' credentials)."""
        if self.role.role != "master":
            raise Conflict(
                f"{self._settings.instance} is {self.role.role}, not a master with HA enabled"
            )
        if body.get("cluster") != self._settings.cluster:
            raise Conflict(
                f"cluster mismatch: master is in {self._settings.cluster!r}, shadow in {body.get('cluster')!r}"
            )
        problem = handshake_problem(
            __version__, await self._revision(), str(body.get("version")), body.get("revision")
        )
        if problem:
            raise Conflict(problem)
        if body.get("instance") == self._settings.instance:
            raise Conflict(
                "an instance cannot be its own shadow (give the shadow another SHADOWLINE_INSTANCE)"
            )
        assert self.record is not None
        state = await self.repo.register_shadow(
            body["instance"], body["url"], self.record.auto_confirm
        )
        self.shadow_seen, self.shadow_position = time.monotonic(), 0
        await self.changed(f"shadow {body['instance']} joined ({state})")
        if state == "confirmed":
            await self._start_relay_at_head()
        return {"master": self._settings.instance, "epoch": self.role.epoch, "state": state}

    async def confirm(self, shadow: str | None, actor: str) -> dict[str, Any]:
        if self.role.role != "master":
            raise Conflict(f"only a master confirms a shadow; this instance is {self.role.role}")
        confirmed = await self.repo.confirm_shadow(shadow)
        await self._writer.submit(
            RecordEvent("ShadowConfirmed", {"shadow": confirmed}, {"actor": actor})
        )
        await self._start_relay_at_head()
        await self.changed(f"shadow {confirmed} confirmed by {actor}")
        return await self.status()

    async def _start_relay_at_head(self) -> None:
        # The shadow's image is taken after this point, so older events need not be published.
        await self._store.set_relay_cursor(self._writer.position)

    async def forget(self, actor: str) -> dict[str, Any]:
        if self.role.role != "master":
            raise Conflict(
                f"only a master has a shadow to remove; this instance is {self.role.role}"
            )
        removed = await self.repo.forget_shadow()
        self.shadow_seen, self.shadow_position, self.shadow_diverged = None, 0, None
        await self._writer.submit(
            RecordEvent("ShadowRemoved", {"shadow": removed}, {"actor": actor})
        )
        await self.changed(f"shadow {removed} removed by {actor}; a new shadow may join")
        return {"removed": removed}

    async def shadow_ack(
        self,
        instance: str,
        position: int,
        chain: bytes | None = None,
        diverged: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A shadow reports what it applied: kept in memory at once (sync mode waits on it),
        written to the database at most once a second. The chain value it reports at its
        position is compared with ours: a shadow whose log differs is diverged, and its acks
        never count in sync mode (an acknowledged write must be in the shadow's log as ours)."""
        record = self.record
        if self.role.role != "master" or record is None or record.shadow_instance != instance:
            raise Forbidden(f"{instance!r} is not the shadow of this master")
        now = time.monotonic()
        self.shadow_seen = now
        if position > self._writer.position:
            diverged = diverged or {"position": position, "reason": "ahead of the master's log"}
        elif diverged is None and chain is not None and position > 0:
            ours = (
                self._writer.chain
                if position == self._writer.position
                else await self._store.chain_at(position)
            )
            if ours is not None and ours != chain:
                diverged = {"position": position, "reason": "its chain value differs from ours"}
        if diverged is not None:
            self._diverged(instance, diverged)
        elif self.shadow_diverged is None:
            self.shadow_position = max(self.shadow_position, position)
            await self.gate.shadow_acked(position, self._writer.position)
        if now - self._persisted_at > 1.0:
            self._persisted_at = now
            await self.repo.shadow_seen(instance, position)
        return {
            "state": record.shadow_state,
            "position": self._writer.position,
            "epoch": self.role.epoch,
            "replication": self.gate.replication,
        }

    def _diverged(self, instance: str, diverged: dict[str, Any]) -> None:
        if self.shadow_diverged is None:
            self.shadow_diverged = {
                "position": diverged.get("position"),
                "reason": str(diverged.get("reason"))[:200],
            }
            self._alert(
                "divergence",
                f"shadow {instance}'s log differs from this master's at position "
                f"{self.shadow_diverged['position']}: {self.shadow_diverged['reason']}; its "
                "acknowledgements no longer count (remove it and set up a new shadow)",
                {"shadow": instance, **self.shadow_diverged},
            )

    async def maintenance(self, on: bool, actor: str) -> dict[str, Any]:
        """Pause (or resume) automatic failover: the master's heartbeats carry the flag."""
        if self.role.role != "master":
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
        if (
            self.role.role == "shadow"
            and self.record
            and self.record.master_url == master_url.rstrip("/")
        ):
            return await self.status()
        if self.role.role != "standalone":
            raise Conflict(
                f"only a standalone instance can join as shadow; this one is {self.role.role}"
            )
        if self._writer.position > 0:
            raise Conflict(
                f"this instance already holds {self._writer.position} events of its own; "
                "a new shadow must start from an empty store"
            )
        peer = self.peer(master_url)
        try:
            answer = await peer.call(
                "POST",
                "/ha/peer/register",
                {
                    "instance": self._settings.instance,
                    "url": self._settings.public_url,
                    "version": __version__,
                    "revision": await self._revision(),
                    "cluster": self._settings.cluster,
                },
                auth=(user, password),
            )
        except PeerRefused as error:
            raise Conflict(f"the master refused the join: {error}") from error
        finally:
            await peer.close()
        await self.repo.set_role(
            "shadow",
            expect={"standalone"},
            epoch=int(answer["epoch"]),
            master_instance=answer["master"],
            master_url=master_url.rstrip("/"),
        )
        await self.changed(
            f"{self._settings.instance} joined {answer['master']} as shadow ({answer['state']})"
        )
        return await self.status()

    # -- both ----------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        record = self.record or await self.load()
        doc: dict[str, Any] = {
            "instance": self._settings.instance,
            "role": self.role.shown,
            "epoch": self.role.epoch,
            "position": self._writer.position,
            "version": __version__,
            "fenced": self.role.fenced,
            "maintenance": record.maintenance,
            "replication": None,
            "shadow": None,
            "master": None,
        }
        if self.role.role == "master" and record.shadow_instance:
            age = None if self.shadow_seen is None else time.monotonic() - self.shadow_seen
            position = max(self.shadow_position, record.shadow_position or 0)
            state = shadow_state(
                record.shadow_state or "pending",
                position,
                age,
                self._writer.position,
                self._settings.takeover_delay,
            )
            doc["replication"] = self.gate.replication
            doc["shadow"] = {
                "instance": record.shadow_instance,
                "url": record.shadow_url,
                "state": state,
                "position": position,
                "lag_events": max(0, self._writer.position - position),
                "last_seen_age": age,
                "diverged": self.shadow_diverged,
            }
        if self.role.role == "shadow":
            replica = self.replica
            doc["replication"] = self.replica.replication if self.replica else None
            doc["master"] = {"instance": record.master_instance, "url": record.master_url}
            doc["lag"] = {
                "events": replica.lag_events() if replica else None,
                "seconds": replica.lag_seconds() if replica else None,
            }
            doc["last_contact_age"] = replica.contact_age() if replica else None
            doc["confirmed"] = bool(replica and replica.confirmed.is_set())
        return doc

    async def chain_at(self, position: int) -> dict[str, Any]:
        if position > self._writer.position:
            raise NotFound(
                f"position {position} is beyond this instance's head ({self._writer.position})"
            )
        chain = await self._store.chain_at(position)
        if chain is None:
            snapshot = await self._store.snapshot_at(position)
            chain = snapshot.chain if snapshot else None
        if chain is None:
            raise NotFound(f"no chain value at position {position} here")
        state = await self._store.state_at(position)
        return {
            "instance": self._settings.instance,
            "position": position,
            "chain": chain.hex(),
            "digest": digest(state),
        }

    async def verify(self) -> dict[str, Any]:
        """Compare chain value and state digest with the peer at the shadow's position."""
        record = self.record or await self.load()
        if self.role.role == "shadow":
            peer_url, peer_name = record.master_url, record.master_instance
        elif self.role.role == "master" and record.shadow_url:
            peer_url, peer_name = record.shadow_url, record.shadow_instance
        else:
            raise Conflict("this instance has no peer to verify against")
        assert peer_url is not None
        peer = self.peer(peer_url, peer_name)
        try:
            if self.role.role == "shadow":
                position = self._writer.position
            else:
                position = int((await peer.call("GET", "/ha/peer/chain"))["position"])
            theirs = await peer.call("GET", "/ha/peer/chain", params={"at": position})
        except PeerRefused as error:
            raise Unavailable(f"the peer refused the check: {error}") from error
        finally:
            await peer.close()
        ours = await self.chain_at(position)
        agree = ours["chain"] == theirs["chain"] and ours["digest"] == theirs["digest"]
        sentence = (
            f"{'agree' if agree else 'DIFFER'}: {ours['instance']} and {theirs['instance']} "
            f"at position {position}: chain {ours['chain'][:12]}… vs {theirs['chain'][:12]}…, "
            f"state digest {ours['digest'][:12]}… vs {theirs['digest'][:12]}…"
        )
        return {
            "agree": agree,
            "position": position,
            "local": ours,
            "peer": theirs,
            "sentence": sentence,
        }
