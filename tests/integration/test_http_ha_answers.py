"""The answers of the HA and audit routes that schemathesis, on one standalone instance, never
sees succeed are what the OpenAPI document says: a quarantine holding events, the audit's
verdicts on a sound log and on tampered ones (tests/e2e/test_ha_answers.py: a real pair's)."""

from __future__ import annotations

import httpx
import pytest

from shadowline.bootstrap import Instance
from shadowline.domain.ha import RoleChange
from shadowline.domain.roles import Role
from tests.integration.test_audit_verify import EVIL, as_owner, history
from tests.openapi_answers import assert_conforms

pytestmark = pytest.mark.integration


async def test_a_quarantine_holding_events_answers_as_documented(
    instance: Instance, admin: httpx.AsyncClient
) -> None:
    await history(admin)
    repo = instance.ha.repo
    await repo.change_role(RoleChange(Role.MASTER, frozenset({Role.STANDALONE})))
    rejoin = RoleChange(
        Role.SHADOW,
        frozenset({Role.MASTER}),
        epoch=2,
        quarantine_after=2,
        ha={"master_instance": "node-b", "master_url": "http://b"},
    )
    assert await repo.change_role(rejoin) == 3
    doc = (await admin.get("/openapi.json")).json()

    body = (await admin.get("/ha/quarantine")).json()

    assert body["count"] == 3 and [e["position"] for e in body["events"]] == [3, 4, 5], body
    assert {e["kind"] for e in body["events"]} == {"subaccount"}
    assert_conforms(doc, "GET", "/ha/quarantine", body)


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ((), None),
        ((f"UPDATE items SET value = '{EVIL}' WHERE name = 'beta'",), "state"),
        (("DELETE FROM items WHERE name = 'gamma'",), "state"),
        (
            (
                "ALTER TABLE events DISABLE TRIGGER events_append_only",
                f"UPDATE events SET data = '{EVIL}' WHERE position = 2",
                "ALTER TABLE events ENABLE TRIGGER events_append_only",
            ),
            "chain",
        ),
        (("UPDATE store_head SET position = 4",), "head"),
    ],
    ids=["sound", "state-value", "state-row", "chain", "head"],
)
async def test_every_verdict_of_the_audit_answers_as_documented(
    instance: Instance,
    db_url: str,
    admin: httpx.AsyncClient,
    tamper: tuple[str, ...],
    problem: str | None,
) -> None:
    await history(admin)
    await instance.snapshotter.take(3)
    if tamper:
        await as_owner(db_url, *tamper)
    doc = (await admin.get("/openapi.json")).json()

    body = (await admin.get("/audit/verify")).json()

    assert body.get("problem") == problem and body["ok"] is (problem is None), body
    assert_conforms(doc, "GET", "/audit/verify", body)
