"""Failover on the instance side: the master's lease, promotion, switch roles, and the recovery
of an old master as the shadow of the new one (quarantining what it wrote after the fork).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from shadowline.adapters.peer import PeerRefused
from shadowline.adapters.store import EventStore
from shadowline.application.gate import CommitGate
from shadowline.application.ha import HaService
from shadowline.application.liveness import Liveness
from shadowline.application.metrics import Metrics
from shadowline.application.writer import Writer
from shadowline.domain import signing
from shadowline.domain.commands import RecordEvent
from shadowline.domain.errors import Conflict, Forbidden, ShadowlineError, Unavailable
from shadowline.settings import Settings

log = logging.getLogger(__name__)

Alert = Callable[[str, str, dict[str, Any]], None]
Publish = Callable[[str, dict[str, Any]], None]


STARTING = "starting: checking the peer and the heartbeats for a newer epoch"


class Failover:
    def __init__(
        self,
        *,
        settings: Settings,
        ha: HaService,
        store: EventStore,
        writer: Writer,
        liveness: Liveness,
        gate: CommitGate,
        alert: Alert,
        publish: Publish,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._ha = ha
        self._store = store
        self._writer = writer
        self._liveness = liveness
        self._gate = gate
        self._alert = alert
        self._publish = publish
        self._metrics = metrics or Metrics()
        self._lock = asyncio.Lock()  # one role change at a time
        self._unknown_until: float | None = None  # a handover whose promote may have landed

    @property
    def role(self) -> Any:
        return self._ha.role

    # -- the master's lease --------------------------------------------------------------------

    def fence(self, reason: str) -> None:
        if self.role.fenced is None:
            self.role.fenced = reason
            self._metrics.fenced(reason)
            self._alert("fenced", f"{self._settings.instance} fenced itself: {reason}", {})
            self._publish("role.changed", self._role_doc(f"fenced: {reason}"))

    async def unfence(self, sentence: str) -> None:
        if self.role.fenced is not None:
            self.role.fenced = None
            self._publish("role.changed", self._role_doc(sentence))
            await self._ha.changed(sentence)  # the relay waits for the start-up check

    def _role_doc(self, sentence: str) -> dict[str, Any]:
        return {
            "instance": self._settings.instance,
            "role": self.role.shown,
            "epoch": self.role.epoch,
            "position": self._writer.position,
            "sentence": sentence,
        }

    async def watch_lease(self, check_first: bool) -> None:
        """On a master: fence when the lease runs out; lift it only when no newer epoch exists.
        A master that (re)starts begins fenced: it may have been replaced while it was down."""
        if check_first:
            self.fence(STARTING)
        else:  # just became master (HA enabled, promoted): let the first heartbeat be confirmed
            await self._liveness.wait_lease(self._settings.lease)
        while True:
            await asyncio.sleep(min(0.1, self._settings.heartbeat_interval / 4))
            if self.role.role != "master":
                return
            if self.role.fenced is None:
                newest, _ = self._liveness.newest_epoch_heard(self._settings.takeover_delay)
                if newest > self.role.epoch:
                    self.fence(f"heard a master in epoch {newest}, newer than {self.role.epoch}")
                elif not self._liveness.lease_valid():
                    self.fence(
                        f"no heartbeat confirmed by the broker for {self._settings.lease:.1f}s (lease)"
                    )
                continue
            if self.role.fenced.startswith("handing over"):
                continue
            try:
                await self._try_unfence()
            except ShadowlineError as error:
                log.warning("still fenced: %s", error)

    def _handover_unknown(self, shadow: str | None, error: Exception) -> None:
        """The promote may have reached the shadow (or may still, delayed, within its window):
        stay fenced until its new epoch is heard (then rejoin it) or the command has expired
        and the shadow answers, authenticated, that it is still the shadow of this epoch."""
        # The shadow takes a command up to WINDOW after it was issued by its own clock (which
        # may differ from ours by as much again), then drains for up to the takeover delay.
        delay = 2 * signing.WINDOW + self._settings.takeover_delay + 1
        self._unknown_until = time.monotonic() + delay
        self.role.fenced = f"handover to {shadow}: outcome unknown ({error})"
        log.warning(self.role.fenced)

    async def _try_unfence(self) -> None:
        if not self._liveness.lease_valid():
            return
        newest, beat = self._liveness.newest_epoch_heard(self._settings.takeover_delay)
        if newest > self.role.epoch and beat is not None:
            await self.recover(beat["url"], str(beat["instance"]))
            return
        peer = await self._peer_health()
        if peer is not None and int(peer["epoch"]) > self.role.epoch:
            if peer.get("role") not in ("master", "fenced"):
                return  # a newer epoch exists: never unfence before its master is known
            record = self._ha.record
            assert record is not None and record.shadow_url is not None
            await self.recover(record.shadow_url, record.shadow_instance)
            return
        if self._unknown_until is not None:
            if time.monotonic() < self._unknown_until or peer is None:
                return  # a promote sent in a handover may still take effect
            self._unknown_until, self.role.master_url = None, None  # not handed over after all
        observed = time.monotonic() - (self._liveness.connected_at or time.monotonic())
        if peer is not None and int(peer["epoch"]) <= self.role.epoch:
            await self.unfence(
                f"{self._settings.instance} is master in epoch {self.role.epoch}: the peer is "
                f"{peer.get('role')} in epoch {peer['epoch']} and the broker confirms heartbeats"
            )
        elif observed >= self._settings.takeover_delay:
            await self.unfence(
                f"{self._settings.instance} is master in epoch {self.role.epoch}: no newer "
                f"epoch heard for {observed:.1f}s"
            )

    async def _peer_health(self) -> dict[str, Any] | None:
        record = self._ha.record
        if record is None or not record.shadow_url:
            return None
        peer = self._ha.peer(record.shadow_url, record.shadow_instance, timeout=1.0)
        try:  # a signed probe with an authenticated answer: a fake peer cannot hold us fenced
            answer = await peer.call("GET", "/health")
        except ShadowlineError:
            return None
        finally:
            await peer.close()
        valid = isinstance(answer, dict) and isinstance(answer.get("epoch"), int)
        return answer if valid else None

    # -- promotion (on the shadow) -------------------------------------------------------------

    async def promote(self, command: dict[str, Any], via: str) -> dict[str, Any]:
        """Verify a promote command, drain what the master sent, and become master."""
        try:
            signing.verify(self._ha.secret(), command, time.time(), self.role.epoch)
            if command.get("cluster") != self._settings.cluster:
                raise Forbidden(
                    f"command for cluster {command.get('cluster')!r}, not for this instance's cluster"
                )
            if command.get("shadow") != self._settings.instance:
                raise Forbidden(f"command for {command.get('shadow')!r}, not for this instance")
        except Forbidden as error:
            self._metrics.rejected(error)
            self._alert(
                "rejected-command",
                f"promote command refused: {error}",
                {"command_id": str(command.get("command_id"))[:64], "via": via},
            )
            raise
        async with self._lock:
            if self.role.role != "shadow":
                refused = Conflict(
                    f"only a shadow can be promoted; this instance is {self.role.role}"
                )
                self._metrics.rejected(refused)
                raise refused
            replica = self._ha.replica
            if replica is not None:
                await replica.drain(self._settings.takeover_delay)
            epoch = int(command["epoch"])
            expected = command.get("fork_position")

            async def fork_and_fence() -> int:
                # Inside the writer: no replicated batch can land between reading the fork and
                # fencing the old epoch, and any later one is refused by the store.
                issued = command.get("issued_at")
                if (
                    not isinstance(issued, int | float)
                    or abs(time.time() - issued) > signing.WINDOW
                ):
                    # Verified on arrival, but the drain took time: a command held back on the
                    # way must not take effect after the master stopped waiting for it.
                    raise Conflict(f"the promote command expired while draining ({issued})")
                fork = self._writer.position
                if isinstance(expected, int) and expected != fork:
                    refused = Conflict(
                        f"the master handed over at position {expected}, this shadow is at {fork}"
                    )
                    self._metrics.rejected(refused)
                    raise refused
                await self._store.fence(epoch)
                return fork

            fork = await self._writer.exclusive(fork_and_fence, reload=False)
            record = self._ha.record
            assert record is not None
            await self._store.set_relay_cursor(fork, force=True)
            await self._ha.repo.set_role(
                "master",
                expect={"shadow"},
                epoch=epoch,
                master_instance=None,
                master_url=None,
                shadow_instance=record.master_instance,
                shadow_url=record.master_url,
                shadow_state="confirmed",
                shadow_position=None,
            )
            await self._ha.load()
            self._gate.configure(enabled=True, acked=0)
            await self._writer.submit(
                RecordEvent(
                    "MasterPromoted",
                    {
                        "epoch": epoch,
                        "fork_position": fork,
                        "previous_master": record.master_instance,
                        "previous_epoch": command.get("previous_epoch"),
                        "reason": command.get("reason"),
                        "command_id": command.get("command_id"),
                        "issued_by": command.get("issued_by"),
                    },
                    {
                        "actor": str(command.get("issued_by") or via),
                        "request_id": str(command.get("command_id")),
                    },
                )
            )
        self._metrics.promoted(command)
        sentence = (
            f"{self._settings.instance} promoted to master in epoch {epoch} at fork position "
            f"{fork} ({command.get('reason')}; by {command.get('issued_by')} via {via})"
        )
        self._publish("role.changed", self._role_doc(sentence))
        await self._ha.changed(sentence)
        return {
            "instance": self._settings.instance,
            "role": "master",
            "epoch": epoch,
            "fork_position": fork,
        }

    async def complete_interrupted_promotion(self) -> None:
        """A master in a promoted epoch whose log holds no event of it died between taking the
        role and recording MasterPromoted: record it now. Nothing was written in the epoch, so
        the fork is the head; an old master rejoining needs the event to find the fork."""
        if self.role.role != "master" or self.role.epoch <= 1:
            return
        if self._writer.head_epoch >= self.role.epoch:
            return
        record = self._ha.record
        fork = self._writer.position
        await self._writer.submit(
            RecordEvent(
                "MasterPromoted",
                {
                    "epoch": self.role.epoch,
                    "fork_position": fork,
                    "previous_master": record.shadow_instance if record else None,
                    "previous_epoch": None,
                    "reason": "promotion completed after a restart",
                    "command_id": None,
                    "issued_by": self._settings.instance,
                },
                {"actor": self._settings.instance, "request_id": str(uuid.uuid4())},
            )
        )
        log.info("recorded the interrupted promotion to epoch %d at fork %d", self.role.epoch, fork)

    # -- recovery (an old master) --------------------------------------------------------------

    async def recover(self, new_master_url: str, new_master: str | None) -> dict[str, Any]:
        """Become the shadow of a newer master: quarantine what we wrote after the fork. Only
        an authenticated answer of `new_master` itself (when named) is taken for the fork."""
        async with self._lock:
            if self.role.role != "master":
                raise Conflict(f"only an old master recovers; this instance is {self.role.role}")
            self.fence("a newer master exists: rejoining as its shadow")
            peer = self._ha.peer(new_master_url, new_master)
            try:
                fork = await peer.call(
                    "GET", "/ha/peer/fork", params={"after_epoch": self.role.epoch}
                )
            finally:
                await peer.close()
            position, new_epoch = int(fork["fork_position"]), int(fork["epoch"])
            ours = await self._store.chain_at(position)
            if ours is None or ours.hex() != fork["chain"]:
                self._alert(
                    "divergence",
                    f"our log differs from {fork['instance']}'s at fork position "
                    f"{position}: staying fenced for an operator",
                    {"fork": fork},
                )
                raise Conflict(f"divergence at fork position {position}")
            moved = await self._writer.exclusive(
                lambda: self._store.quarantine_after(position, new_epoch)
            )
            await self._ha.repo.set_role(
                "shadow",
                expect={"master"},
                epoch=new_epoch,
                master_instance=fork["instance"],
                master_url=new_master_url,
                shadow_instance=None,
                shadow_url=None,
                shadow_state=None,
                shadow_position=None,
            )
            self.role.fenced, self._unknown_until = None, None
            await self._ha.load()  # role.changed below says the new role and epoch
            self._gate.configure(enabled=False, acked=0)
        self._metrics.rejoined(moved)
        if moved:
            self._alert(
                "quarantined",
                f"{moved} events written after fork position {position} were "
                "moved to quarantine (list them with `shadowline ha quarantine`)",
                {"count": moved},
            )
        sentence = (
            f"{self._settings.instance} rejoined {fork['instance']} as shadow in epoch {new_epoch} "
            f"at fork position {position}; {moved} events quarantined"
        )
        self._publish("role.changed", self._role_doc(sentence))
        await self._ha.changed(sentence)
        return {"fork_position": position, "quarantined": moved, "epoch": new_epoch}

    # -- switch roles (on the master) ----------------------------------------------------------

    async def switch_roles(self, actor: str) -> dict[str, Any]:
        record = self._ha.record
        if self.role.role != "master" or self.role.fenced is not None:
            raise Conflict(
                f"switch roles runs on a writable master; this instance is {self.role.shown}"
            )
        status = await self._ha.status()
        shadow = status.get("shadow")
        # Under a steady load the shadow is always a few events behind ("syncing"); in sync
        # mode it acknowledges every write, so the wait below is short and bounded.
        in_sync = shadow is not None and (
            shadow["state"] == "connected"
            or (shadow["state"] == "syncing" and self._gate.replication == "sync")
        )
        if not in_sync or record is None or not record.shadow_url:
            state = shadow["state"] if shadow else "absent"
            raise Conflict(f"the shadow is {state}, not in sync: switch roles refused")
        started = time.monotonic()
        self.role.fenced = f"handing over to {record.shadow_instance}"
        self.role.master_url = record.shadow_url
        try:
            # Writes admitted before the fence are still queued in the writer: the fork is the
            # head once they have committed, so the shadow must have them all.
            fork = await self._writer.barrier()
            deadline = started + self._settings.takeover_delay
            while self._gate.acked < fork:
                if time.monotonic() > deadline:
                    raise Conflict(
                        f"the shadow did not reach position {fork} in time: switch roles aborted"
                    )
                await asyncio.sleep(0.005)
            command = signing.sign(
                self._ha.secret(),
                {
                    "type": "promote",
                    "cluster": self._settings.cluster,
                    "shadow": record.shadow_instance,
                    "epoch": self.role.epoch + 1,
                    "previous_epoch": self.role.epoch,
                    "command_id": str(uuid.uuid4()),
                    "issued_at": time.time(),
                    "issued_by": self._settings.instance,
                    "reason": f"switch roles requested by {actor}",
                    "fork_position": fork,
                },
            )
            peer = self._ha.peer(record.shadow_url, record.shadow_instance)
            try:
                await peer.call("POST", "/ha/peer/promote", command)
            except PeerRefused as error:
                raise Conflict(f"the shadow refused the handover: {error}") from error
            except Unavailable as error:
                if not isinstance(error.__cause__, httpx.ConnectError):
                    self._handover_unknown(record.shadow_instance, error)
                    raise  # sent but unanswered (or not authenticated): it may have promoted
                raise Conflict(
                    f"the shadow is not reachable, switch roles refused: {error}"
                ) from error
            finally:
                await peer.close()
        except (Conflict, Unavailable):
            if self._unknown_until is None:  # certainly not promoted: writable again
                self.role.fenced = None
                self.role.master_url = None
            raise
        # Promoted: from here on this instance rejoins; should recover() fail (the fork answer
        # lost), the lease watcher retries it instead of waiting on a handover that is done.
        self.role.fenced = (
            f"rejoining {record.shadow_instance}, master in epoch {self.role.epoch + 1}"
        )
        result = await self.recover(record.shadow_url, record.shadow_instance)
        took = time.monotonic() - started
        sentence = (
            f"roles switched: {record.shadow_instance} is master in epoch {result['epoch']}, "
            f"{self._settings.instance} its shadow ({took:.2f}s without writes)"
        )
        log.info(sentence)
        self._publish(
            "failover.switched",
            {
                "step": "switched",
                "sentence": sentence,
                "from": self._settings.instance,
                "to": record.shadow_instance,
                "epoch": result["epoch"],
                "seconds": took,
            },
        )
        return {**result, "new_master": record.shadow_instance, "seconds": took}
