"""GET /alerts: this instance's alerts with their state, active first (DESIGN.md's fields).

Any logged-in role may read it (viewer and up, as GET /ha): it says what the HA screen shows a
viewer anyway, names no configuration value, and a monitoring script should not need a user
that may read the configuration. The alerts' `details` stay on the monitoring exchange.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from shadowline.entrypoints.deps import Alerts
from shadowline.entrypoints.http.common import Viewer

router = APIRouter()

_TIME = "RFC 3339 UTC with microseconds, as the events' recorded_at"


class AlertRow(BaseModel):
    name: str = Field(description="as in alert.<name> (schemas/monitoring/alert.json)")
    state: Literal["active", "resolved"]
    raised_at: str = Field(description=f"when it became active; {_TIME}")
    resolved_at: str | None = Field(description=f"when it resolved (null while active); {_TIME}")
    instance: str = Field(description="the instance that raised it (this one)")
    role: str = Field(description="its role when it raised it: master, shadow, fenced, ...")
    message: str = Field(description="what happened, as it was raised")


class AlertList(BaseModel):
    alerts: list[AlertRow] = Field(description="active first, then resolved; newest first")


# The refusals as entrypoints.errors renders them ({"error": ...}); entrypoints.http.openapi's
# `answers` can take this table over once it is in the tree.
_REFUSED = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": AlertList, "description": "OK"},
    **{
        code: {"description": said, "content": {"application/json": {"schema": _REFUSED}}}
        for code, said in (
            (401, "no or wrong credentials"),
            (403, "the user may not read the status"),
            (429, "too many failed logins from this address"),
        )
    },
}


@router.get("/alerts", responses=_ANSWERS)
async def alerts(found: Alerts, _: Viewer) -> dict[str, Any]:
    return {"alerts": found.alerts() if found is not None else []}
