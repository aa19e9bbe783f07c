"""HTTP routes of switching roles on the master: now (as it always was), or scheduled for a
time (202), and a scheduled switch cancelled (application.switch_schedule)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from shadowline.domain.errors import Conflict, FieldError, InvalidInput
from shadowline.domain.roles import Role
from shadowline.entrypoints.deps import HA, FailoverDep, Switches
from shadowline.entrypoints.http.common import Admin
from shadowline.entrypoints.http.ha import Body, body_doc
from shadowline.entrypoints.http.openapi import WRITE, answers
from shadowline.entrypoints.http.openapi_ha import RolesSwitched, ScheduledSwitch

router = APIRouter()

_SWITCH = {
    "type": "object",
    "properties": {"at": {"type": "string", "description": "ISO-8601 with offset: schedule"}},
    "additionalProperties": False,
}
_SCHEDULED: dict[int | str, dict[str, Any]] = {
    202: {"model": ScheduledSwitch, "description": "Accepted: scheduled for `at`"}
}


def _on_master(ha: HA) -> None:
    # On a shadow the state does not allow it: 409 as for every HA action (DESIGN), and the
    # refusal names the master so a person or a client knows where to ask instead.
    if ha.role.role == Role.SHADOW:
        master = ha.record.master_url if ha.record else None
        raise Conflict("switch roles runs on the master; this instance is a shadow", master)


@router.post(
    "/ha/switch-roles",
    responses={**answers(RolesSwitched, *WRITE), **_SCHEDULED},
    openapi_extra=body_doc(_SWITCH),
)
async def ha_switch_roles(
    failover: FailoverDep, ha: HA, switches: Switches, user: Admin, body: Body, response: Response
) -> dict[str, Any]:
    """Switch now (no body), or schedule the switch for `at` (202, application.switch_schedule)."""
    if unknown := sorted(set(body) - {"at"}):
        raise InvalidInput([FieldError(f"$.{k}", "unknown field") for k in unknown])
    _on_master(ha)
    if "at" not in body:
        return await failover.switch_roles(user.name)
    response.status_code = 202
    return await switches.schedule(body["at"], user.name)


@router.delete("/ha/switch-roles", responses=answers(ScheduledSwitch, *WRITE))
async def ha_cancel_switch(ha: HA, switches: Switches, user: Admin) -> dict[str, Any]:
    """Cancel the scheduled switch of roles not started yet (409 when there is none)."""
    _on_master(ha)
    return await switches.cancel(user.name)
