"""Failover on the instance side: the master's lease, promotion, and the recovery of an old
master as the shadow of the new one (quarantining what it wrote after the fork). The switch of
roles is in application.handover.

The decisions are pure (domain.failover, domain.promote); this module observes, executes them,
logs their sentence and publishes it (role.changed). A promotion and a recovery are each one
store transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from shadowline.application import handover, lease
from shadowline.application.gate import CommitGate
from shadowline.application.ha import HaService
from shadowline.application.hooks import Hooks
from shadowline.application.monitoring import Uncounted
from shadowline.application.ports.monitoring import AlertSink, HaCounts
from shadowline.application.ports.store import EventStore
from shadowline.application.role_commit import EventParts
from shadowline.application.roles import CurrentRole
from shadowline.application.writer import Writer
from shadowline.domain import failover as rules
from shadowline.domain import promote as promotion
from shadowline.domain.alerting import AlertName
from shadowline.domain.errors import Conflict, Forbidden
from shadowline.domain.failover import Fork
from shadowline.domain.ha import RoleChange
from shadowline.domain.hooks import Cause, HookCall, HookName
from shadowline.domain.promote import PromoteCommand
from shadowline.domain.roles import FenceReason, Role, RoleState
from shadowline.settings import Settings

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], None]

STARTING = rules.STARTING  # runtime fences a master that starts with it


class Failover:
    def __init__(
        self,
        *,
        settings: Settings,
        ha: HaService,
        store: EventStore,
        writer: Writer,
        liveness: lease.Lease | None,
        gate: CommitGate,
        alert: AlertSink,
        publish: Publish,
        metrics: HaCounts | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.settings = settings
        self.ha = ha
        self._store = store
        self.writer = writer
        self._liveness = liveness
        self.gate = gate
        self.alert = alert
        self.publish = publish
        self.metrics = metrics or Uncounted()
        self.hooks = hooks  # SHADOWLINE_BEFORE_PROMOTE, run before a promotion commits
        self.lock = asyncio.Lock()  # one role change at a time
        self._tried = promotion.TriedCommands()  # ids of the promote commands taken up
        self._timing = rules.Timing(settings.instance, settings.lease, settings.takeover_delay)

    @property
    def role(self) -> CurrentRole:
        return self.ha.role

    # -- the master's fence --------------------------------------------------------------------

    def fence_at_start(self) -> None:
        """A master that (re)starts begins fenced: it may have been replaced while down."""
        self.role.set(self.role.state.fenced_by(FenceReason.STARTING, STARTING))
        self.metrics.fenced(STARTING)  # shadowline_fencings_total{reason="starting"}

    def fence(self, reason: FenceReason, sentence: str) -> None:
        if self.role.fence is None:
            self.role.set(self.role.state.fenced_by(reason, sentence))
            self.metrics.fenced(sentence)
            self.alert(AlertName.FENCED, f"{self.settings.instance} fenced itself: {sentence}", {})
            self.publish("role.changed", self.role_doc(f"fenced: {sentence}"))

    async def unfence(self, sentence: str, state: RoleState | None = None) -> None:
        if self.role.fence is not None:
            self.role.set(state or self.role.state.unfenced())
            self.publish("role.changed", self.role_doc(sentence))
            await self.ha.changed(sentence)  # the relay waits for the start-up check

    def role_doc(self, sentence: str) -> dict[str, Any]:
        return self.ha.whoami().role_changed(sentence)

    # -- the master's lease --------------------------------------------------------------------

    async def watch_lease(self, check_first: bool) -> None:
        """On a master: fence when the lease runs out; lift it only when no newer epoch exists
        (application.lease)."""
        assert self._liveness is not None
        await lease.watch(self, self._liveness, self._timing, check_first)

    # -- promotion (on the shadow) -------------------------------------------------------------

    def _verified(self, command: PromoteCommand, via: str) -> None:
        try:
            command.verify(
                self.ha.secret(),
                now=time.time(),
                epoch=self.role.epoch,
                cluster=self.settings.cluster,
                instance=self.settings.instance,
            )
        except Forbidden as error:
            self.metrics.rejected(error)
            self.alert(
                AlertName.REJECTED_COMMAND,
                f"promote command refused: {error}",
                {"command_id": command.command_id[:64], "via": via},
            )
            raise

    async def promote(self, command: PromoteCommand, via: str) -> dict[str, Any]:
        """Verify a promote command, drain what the master sent, and become master: fence the
        old epoch, take the role and record MasterPromoted in one transaction."""
        self._verified(command, via)
        if not self._tried.first(command.command_id, time.time()):
            raise Conflict(f"promote command {command.command_id[:64]} was taken up already")
        async with self.lock:
            if self.role.role != Role.SHADOW:
                refused = Conflict(
                    f"only a shadow can be promoted; this instance is {self.role.role}"
                )
                self.metrics.rejected(refused)
                raise refused
            if (replica := self.ha.replicas.current) is not None:
                await replica.drain(self.settings.takeover_delay)
            if self.hooks is not None and self.settings.before_promote is not None:
                late = promotion.hook_would_outlast(
                    command, time.time(), self.settings.before_promote_timeout
                )
                if late is not None:
                    raise late
                # PromotionAborted: nothing claimed, still the shadow
                await self.hooks.before_promote(self._before_promote(command))
            head, _ = await self.ha.commit(
                lambda head: self._promotion(command, head.position, via)
            )
            await self.ha.load()
            self.gate.configure(enabled=True, acked=0)
        fork = head.position
        self.metrics.promoted(dict(command.doc))
        sentence = promotion.promoted_sentence(self.settings.instance, command, fork, via)
        self.publish("role.changed", self.role_doc(sentence))
        await self.ha.changed(sentence)
        return {
            "instance": self.settings.instance,
            "role": "master",
            "epoch": command.epoch,
            "fork_position": fork,
        }

    def _before_promote(self, command: PromoteCommand) -> HookCall:
        record = self.ha.record
        return HookCall(
            HookName.BEFORE_PROMOTE,
            Role.MASTER,
            Role.SHADOW,
            command.epoch,
            promotion.cause(command),
            previous_master=record.master_instance if record else None,
            previous_master_url=record.master_url if record else None,
        )

    def _promotion(
        self, command: PromoteCommand, fork: int, via: str
    ) -> tuple[RoleChange, EventParts]:
        """Decided inside the writer: no replicated batch can land between reading the fork
        and fencing the old epoch, and any later one is refused by the store."""
        expired = promotion.expired_while_draining(command, time.time())
        if expired is not None:
            raise expired
        mismatch = promotion.fork_mismatch(command, fork)
        if mismatch is not None:
            self.metrics.rejected(mismatch)
            raise mismatch
        record = self.ha.record
        assert record is not None
        change = RoleChange(
            Role.MASTER,
            frozenset({Role.SHADOW}),
            epoch=command.epoch,
            fence=command.epoch,
            relay_cursor=fork,
            ha={
                "master_instance": None,
                "master_url": None,
                "shadow_instance": record.master_instance,
                "shadow_url": record.master_url,
                "shadow_state": "confirmed",
                "shadow_position": None,
            },
            cause=promotion.cause(command),
        )
        event = promotion.master_promoted(
            command, fork=fork, previous_master=record.master_instance, via=via
        )
        return change, event

    # -- recovery (an old master) --------------------------------------------------------------

    async def recover(
        self, new_master_url: str, new_master: str | None, cause: Cause = Cause.REJOIN
    ) -> dict[str, Any]:
        """Become the shadow of a newer master: quarantine what we wrote after the fork and
        take the role in one transaction. Only an authenticated answer of `new_master` itself
        (when named) is taken for the fork."""
        async with self.lock:
            if self.role.role != Role.MASTER:
                raise Conflict(f"only an old master recovers; this instance is {self.role.role}")
            self.fence(FenceReason.REJOINING, rules.REJOINING)
            fork, answer = await self._fork(new_master_url, new_master)
            problem = rules.divergence(fork, await self._store.chain_at(fork.position))
            if problem is not None:
                self.alert(AlertName.DIVERGENCE, problem, {"fork": answer})
                raise Conflict(f"divergence at fork position {fork.position}")
            change = RoleChange(
                Role.SHADOW,
                frozenset({Role.MASTER}),
                epoch=fork.epoch,
                quarantine_after=fork.position,
                ha={
                    "master_instance": fork.instance,
                    "master_url": new_master_url,
                    "shadow_instance": None,
                    "shadow_url": None,
                    "shadow_state": None,
                    "shadow_position": None,
                },
                cause=cause,
            )
            _, moved = await self.ha.commit(lambda head: (change, None))
            await self.ha.load(unfence=True)  # role.changed below says the new role and epoch
            self.gate.configure(enabled=False, acked=0)
        await self._rejoined(fork, moved)
        return {"fork_position": fork.position, "quarantined": moved, "epoch": fork.epoch}

    async def _fork(self, url: str, instance: str | None) -> tuple[Fork, dict[str, Any]]:
        peer = self.ha.peer(url, instance)
        try:
            answer = await peer.call(
                "GET", "/ha/peer/fork", params={"after_epoch": self.role.epoch}
            )
        finally:
            await peer.close()
        fork = Fork(
            str(answer["instance"]),
            int(answer["fork_position"]),
            int(answer["epoch"]),
            str(answer["chain"]),
        )
        return fork, answer

    async def _rejoined(self, fork: Fork, moved: int) -> None:
        self.metrics.rejoined(moved)
        if moved:
            self.alert(
                AlertName.QUARANTINED,
                f"{moved} events written after fork position {fork.position} were "
                "moved to quarantine (list them with `shadowline ha quarantine`)",
                {"count": moved},
            )
        sentence = rules.rejoined_sentence(self.settings.instance, fork, moved)
        self.publish("role.changed", self.role_doc(sentence))
        await self.ha.changed(sentence)

    # -- switch roles (on the master) ----------------------------------------------------------

    async def switch_roles(self, actor: str) -> dict[str, Any]:
        return await handover.switch_roles(self, actor)
