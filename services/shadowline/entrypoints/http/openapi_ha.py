"""What the OpenAPI document says of the HA answers that are not GET /ha's status: removing the
shadow, switching roles, the quarantine, the checks of the log (GET /ha/verify, GET
/audit/verify), and the signed calls between the instances (/ha/peer/*) with their bodies.

Documentation only, as entrypoints.http.openapi: the routes keep returning their dicts. Each
model names every field the answer has; a field that is always present is required (null
where the type says so), one that only some answers have is not. The answers are closed
(`additionalProperties: false`): schemathesis then holds the routes to exactly these fields.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from shadowline.adapters.resources import schemas_dir

_TIME = "RFC 3339 UTC with microseconds, as the events' recorded_at"
_HEX64 = "^[0-9a-f]{64}$"


class _Closed(BaseModel):
    """An answer with exactly the fields named."""

    model_config = ConfigDict(extra="forbid")


def _absent(description: str) -> Any:
    """A field only some answers have: absent otherwise (never null)."""

    def no_default(schema: dict[str, Any]) -> None:
        schema.pop("default", None)

    return Field(None, description=description, json_schema_extra=no_default)


# -- for people ----------------------------------------------------------------------------------


class ShadowRemoved(_Closed):
    """DELETE /ha/shadow (application.ha.HaService.forget)."""

    removed: str = Field(description="the instance that was this master's shadow")


class RolesSwitched(_Closed):
    """POST /ha/switch-roles (application.handover.switch_roles): the old master's rejoin as
    the new master's shadow, and who is master now."""

    new_master: str = Field(description="the instance that is master now (the shadow was)")
    epoch: int = Field(description="the new master's epoch")
    fork_position: int = Field(description="the position the roles were handed over at")
    quarantined: int = Field(
        description="events of this instance moved to the quarantine on rejoining"
    )
    seconds: float = Field(description="how long writes were stopped, in seconds")


class ScheduledSwitch(_Closed):
    """POST /ha/switch-roles with `{"at": ...}` (202), DELETE /ha/switch-roles, and GET /ha's
    `scheduled_switch` (application.switch_schedule): a switch of roles taken for later."""

    at: str = Field(description=f"when it is due ({_TIME})")
    requested_by: str = Field(description="the user who scheduled it")
    requested_at: str = Field(description=f"when it was scheduled ({_TIME})")
    state: Literal["scheduled", "running", "done", "failed", "unknown", "cancelled"] = Field(
        description="unknown: the promote may have reached the shadow (kept apart from failed)"
    )
    reason: str | None = Field(description="why it ended so (null while scheduled or running)")
    epoch: int = Field(description="the master's epoch it was taken in (it runs in no other)")
    finished_at: str | None = Field(description=f"when it ended ({_TIME}), null before")


class QuarantinedEvent(_Closed):
    """An event an old master wrote after the fork, kept apart (never dropped): the envelope's
    fields (GET /events) and the signature, plus where and when it was moved."""

    id: str = Field(description="the event's id (UUID)")
    position: int = Field(description="its position in the old master's log")
    epoch: int = Field(description="the epoch it was written in")
    type: str = Field(description="ConfigPut, ConfigDeleted, or an HA event")
    kind: str | None = Field(description="the config kind (null: an HA event)")
    name: str | None = Field(description="the item's name (null: an HA event)")
    version: int | None = Field(description="the item's version (null: an HA event)")
    data: Any = Field(description="the event's data (the value put), or null")
    metadata: dict[str, Any] = Field(description="actor, request id, reason")
    recorded_at: str = Field(description=f"when it was written; {_TIME}")
    chain: str = Field(description="its hash chain value (hex)", pattern=_HEX64)
    signature: str | None = Field(description="the master's signature (hex); null: unsigned")
    quarantined_at: str = Field(description=f"when it was moved; {_TIME}")
    fork_position: int = Field(description="the new master's fork position")
    new_epoch: int = Field(description="the epoch of the master it rejoined")


class Quarantine(_Closed):
    """GET /ha/quarantine: the quarantined events, oldest move first."""

    count: int = Field(description="how many events are in the quarantine")
    events: list[QuarantinedEvent]


class ChainAt(_Closed):
    """What an instance's log is at a position (GET /ha/peer/chain; application.verify)."""

    instance: str = Field(description="the instance that answers")
    position: int
    chain: str = Field(description="the hash chain value at the position (hex)", pattern=_HEX64)
    digest: str = Field(
        description="SHA-256 (hex) of the state at the position, canonical JSON", pattern=_HEX64
    )


class PeerCheck(_Closed):
    """GET /ha/verify (application.verify.with_peer): this instance and its peer at the
    shadow's position."""

    agree: bool = Field(description="the chain values and the state digests are equal")
    position: int = Field(description="the shadow's position, where both are compared")
    local: ChainAt = Field(description="this instance's log there")
    peer: ChainAt = Field(description="the peer's, as it answered (authenticated)")
    sentence: str = Field(description="the finding in words")


class AuditSignatures(_Closed):
    checked: bool = Field(description="signatures were checked (the cluster secret is set)")
    signed: int = Field(description="events with a valid signature")
    unsigned_prefix: int = Field(description="unsigned events opening the log, before signing")


class AuditFinding(_Closed):
    """GET /audit/verify (application.audit, domain.audit): ok, or the first problem found.

    `expected` and `found` are what the problem is about: hex chain values for `chain`, digests
    or `{"digest", "chain"}` for `snapshot`, `{"position", "chain"}` for `head`, item rows
    `{"version", "live", "value", "position"}` (or null) for `state`: any JSON."""

    ok: bool = Field(description="the log, its snapshots and the served state agree")
    checked: int = Field(description="events checked (chain and signature) before the verdict")
    position: int = Field(description="the head's position, or where the problem is")
    sentence: str = Field(description="the verdict in words")
    chain: str | SkipJsonSchema[None] = _absent("the head's chain value (hex), once walked")
    problem: Literal["chain", "signature", "snapshot", "head", "state"] | SkipJsonSchema[None] = (
        _absent("what disagrees (only when not ok)")
    )
    key: str | SkipJsonSchema[None] = _absent('"<kind>/<name>" served otherwise (state)')
    expected: Any = _absent("what the log says (some problems)")
    found: Any = _absent("what is there instead (some problems)")
    items: int | SkipJsonSchema[None] = _absent("served items (only when ok)")
    snapshots: int | SkipJsonSchema[None] = _absent("snapshots checked (only when ok)")
    signatures: AuditSignatures | SkipJsonSchema[None] = _absent("only when ok")


class PreflightCheck(_Closed):
    """One check of GET /ha/preflight (domain.preflight)."""

    name: Literal[
        "role", "shadow", "watchdog", "timing", "clocks", "version", "broker", "peer-probes"
    ] = Field(description="what is checked")
    ok: bool = Field(description="whether it would let a failover succeed now")
    detail: str = Field(description="the reason, a sentence an operator can act on")


class PreflightAnswer(_Closed):
    """GET /ha/preflight (application.preflight): would a failover succeed now."""

    ok: bool = Field(description="every check is ok")
    checks: list[PreflightCheck] = Field(description="each check, in a fixed order")


# -- between the instances -----------------------------------------------------------------------


class PeerAbout(_Closed):
    """GET /ha/peer/about (application.preflight.Preflight.about): for the peer's preflight."""

    instance: str
    role: Literal["standalone", "master", "shadow", "fenced"]
    epoch: int
    version: str = Field(description="its shadowline version")
    revision: str | None = Field(description="its schema's migration revision")
    lease: float = Field(description="its master lease, in seconds")
    lease_margin: float = Field(description="its lease margin (one heartbeat), in seconds")
    takeover_delay: float = Field(description="its SHADOWLINE_TAKEOVER_DELAY, in seconds")
    heartbeat_interval: float = Field(description="its SHADOWLINE_HEARTBEAT_INTERVAL, seconds")
    lag_events: int | None = Field(description="on a shadow: events behind its master")
    lag_seconds: float | None = Field(description="on a shadow: seconds behind its master")
    time: float = Field(description="its clock when it answered: UNIX time in seconds")


class Registered(_Closed):
    """POST /ha/peer/register (application.ha.HaService.register): the master took the shadow."""

    master: str = Field(description="the master's instance name")
    epoch: int = Field(description="the master's epoch (the shadow takes it)")
    state: Literal["pending", "confirmed"] = Field(
        description="pending until an admin confirms it (POST /ha/confirm) or auto-confirm"
    )


class Acked(_Closed):
    """POST /ha/peer/ack (application.ha.HaService.shadow_ack): the master's side."""

    state: Literal["pending", "confirmed"] | None = Field(description="the shadow as stored")
    position: int = Field(description="the master's head")
    epoch: int = Field(description="the master's epoch")
    replication: Literal["sync", "async"] | None = Field(description="null: not replicating")


class Promoted(_Closed):
    """POST /ha/peer/promote (application.failover.Failover.promote): this instance is master."""

    instance: str
    role: Literal["master"]
    epoch: int = Field(description="the epoch it is master in (the command's)")
    fork_position: int = Field(description="its head when it took the role")


class Fork(ChainAt):
    """GET /ha/peer/fork: the log at the fork of the first promotion after `after_epoch`."""

    fork_position: int = Field(description="where the promotion forked (equal to `position`)")
    epoch: int = Field(description="the epoch that promotion opened")


_DIVERGED = {
    "type": "object",
    "description": "set once the shadow found its log differs from the master's",
    "properties": {"position": {"type": "integer"}, "reason": {"type": "string"}},
}
ACK = {
    "type": "object",
    "description": "what a shadow applied (application.replica_status)",
    "properties": {
        "position": {"type": "integer", "minimum": 0, "maximum": 2**62},
        "chain": {
            "type": ["string", "null"],
            "pattern": _HEX64,
            "description": "the chain value at `position` (hex); required when position > 0",
        },
        "diverged": _DIVERGED,
    },
    "required": ["position"],
}
REGISTER = {
    "type": "object",
    "description": "a shadow asks to join (application.ha.HaService._register_with)",
    "properties": {
        "instance": {"type": "string", "description": "the calling instance (signed)"},
        "url": {"type": "string", "description": "where the master reaches it"},
        "version": {
            "type": "string",
            "description": "its shadowline version (must be the master's)",
        },
        "revision": {
            "type": ["string", "null"],
            "description": "its schema's migration revision (must be the master's)",
        },
        "cluster": {
            "type": "string",
            "description": "its SHADOWLINE_CLUSTER (must be the master's)",
        },
    },
    "required": ["instance", "url", "version", "cluster"],
}


@cache
def promote_command() -> dict[str, Any]:
    """The signed promote command (schemas/commands/promote.json), embedded: its own $id and
    $schema stay out of the document (see openapi._embedded)."""
    schema = orjson.loads((schemas_dir() / "commands" / "promote.json").read_bytes())
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}
