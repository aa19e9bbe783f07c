"""GET /audit/verify recomputes the state from the whole log and compares it with what is served:
a superuser who changes the items table (or a snapshot, or the head) directly is found, the first
differing key named, as a rewritten event is found by the chain."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from shadowline.bootstrap import Instance
from shadowline.domain.events import GENESIS, Event, link
from shadowline.domain.state import digest

pytestmark = pytest.mark.integration

ACME = {"region": "eu10", "subaccount_id": "sa-1"}
EVIL = '{"region": "evil", "subaccount_id": "sa-1"}'


async def history(client: Any) -> None:
    """Five events: acme v1, beta v1, acme v2, acme deleted, gamma v1."""
    for path, value in (
        ("subaccount/acme", ACME),
        ("subaccount/beta", {**ACME, "subaccount_id": "b1"}),
        ("subaccount/acme", {**ACME, "region": "us10"}),
    ):
        assert (await client.put(f"/config/{path}", json=value)).status_code in (200, 201)
    assert (await client.delete("/config/subaccount/acme")).status_code == 200
    assert (await client.put("/config/subaccount/gamma", json=ACME)).status_code == 201


async def as_owner(url: str, *statements: str) -> None:
    owner = await asyncpg.connect(url)
    try:
        async with owner.transaction():
            for statement in statements:
                await owner.execute(statement)
    finally:
        await owner.close()


async def test_an_untouched_log_verifies_with_its_head_and_counts(
    instance: Instance, admin: httpx.AsyncClient
) -> None:
    await history(admin)
    await instance.snapshotter.take(3)

    body = (await admin.get("/audit/verify")).json()

    head = await instance.store.head()
    assert body["ok"] is True, body
    assert (body["position"], body["checked"], body["chain"]) == (5, 5, head.chain.hex())
    assert (body["items"], body["snapshots"]) == (3, 1)  # acme's tombstone is an item row too


@pytest.mark.parametrize(
    ("tamper", "key"),
    [
        (f"UPDATE items SET value = '{EVIL}' WHERE name = 'beta'", "subaccount/beta"),
        (f"UPDATE items SET live = true, value = '{EVIL}' WHERE name = 'acme'", "subaccount/acme"),
        ("UPDATE items SET version = version + 1 WHERE name = 'gamma'", "subaccount/gamma"),
        ("DELETE FROM items WHERE name = 'gamma'", "subaccount/gamma"),
        (
            "INSERT INTO items (kind, name, version, live, value, position, updated_at) "
            f"VALUES ('subaccount', 'evil', 1, true, '{EVIL}', 5, now())",
            "subaccount/evil",
        ),
    ],
    ids=["value", "revived-tombstone", "version", "deleted-row", "added-row"],
)
async def test_a_superusers_change_of_the_served_state_is_found_and_its_key_named(
    db_url: str, admin: httpx.AsyncClient, tamper: str, key: str
) -> None:
    await history(admin)
    await as_owner(db_url, tamper)

    body = (await admin.get("/audit/verify")).json()

    assert body["ok"] is False, body
    assert (body["problem"], body["key"], body["checked"]) == ("state", key, 5)
    assert body["expected"] != body["found"]
    assert key in body["sentence"]


async def test_the_served_value_that_the_audit_names_is_what_the_log_does_not_say(
    db_url: str, admin: httpx.AsyncClient
) -> None:
    await history(admin)
    await as_owner(db_url, f"UPDATE items SET value = '{EVIL}' WHERE name = 'beta'")

    served = (await admin.get("/config/subaccount/beta")).json()
    body = (await admin.get("/audit/verify")).json()

    assert served["value"]["region"] == "evil"
    assert body["found"]["value"] == served["value"]
    assert body["expected"] == {
        "version": 1,
        "live": True,
        "value": {**ACME, "subaccount_id": "b1"},
        "position": 2,
    }


async def test_a_rewritten_event_is_found_by_the_chain_at_its_position(
    db_url: str, admin: httpx.AsyncClient
) -> None:
    await history(admin)
    await as_owner(
        db_url,
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        f"UPDATE events SET data = '{EVIL}' WHERE position = 2",
        "ALTER TABLE events ENABLE TRIGGER events_append_only",
    )

    body = (await admin.get("/audit/verify")).json()

    assert body["ok"] is False
    assert (body["problem"], body["position"], body["checked"]) == ("chain", 2, 1)
    assert body["expected"] != body["found"]


async def test_a_changed_snapshot_is_found(
    instance: Instance, db_url: str, admin: httpx.AsyncClient
) -> None:
    await history(admin)
    await instance.snapshotter.take(3)
    await as_owner(
        db_url,
        "ALTER TABLE snapshots DISABLE TRIGGER snapshots_append_only",
        f"UPDATE snapshots SET state = jsonb_set(state, '{{subaccount/beta}}', '{EVIL}')",
        "ALTER TABLE snapshots ENABLE TRIGGER snapshots_append_only",
    )

    body = (await admin.get("/audit/verify")).json()

    assert (body["ok"], body["problem"], body["position"]) == (False, "snapshot", 3)


async def test_a_snapshot_whose_digest_was_made_to_match_is_found_against_the_log(
    instance: Instance, db_url: str, admin: httpx.AsyncClient
) -> None:
    await history(admin)
    await instance.snapshotter.take(3)
    state = {"subaccount/forged": ACME}  # another state, its digest computed honestly
    await as_owner(
        db_url,
        "ALTER TABLE snapshots DISABLE TRIGGER snapshots_append_only",
        f"UPDATE snapshots SET state = '{orjson.dumps(state).decode()}', "
        f"digest = '{digest(state)}'",
        "ALTER TABLE snapshots ENABLE TRIGGER snapshots_append_only",
    )

    body = (await admin.get("/audit/verify")).json()

    assert (body["ok"], body["problem"], body["position"]) == (False, "snapshot", 3)
    assert body["found"]["digest"] == digest(state) != body["expected"]["digest"]


async def test_a_head_moved_by_a_superuser_is_found(db_url: str, admin: httpx.AsyncClient) -> None:
    await history(admin)
    await as_owner(db_url, "UPDATE store_head SET position = 4")

    body = (await admin.get("/audit/verify")).json()

    assert (body["ok"], body["problem"]) == (False, "head")
    assert body["expected"]["position"] == 5 and body["found"]["position"] == 4


async def test_a_shadow_still_copying_its_history_answers_503_instead_of_a_verdict(
    db_url: str, admin: httpx.AsyncClient
) -> None:
    await history(admin)
    await as_owner(db_url, "UPDATE store_head SET base_position = 3")

    response = await admin.get("/audit/verify")

    assert response.status_code == 503
    assert "still being copied" in response.text


async def _rechain(url: str, *, strip: bool) -> None:
    """What a database superuser without the cluster secret can do at most: rewrite an event,
    then recompute the unkeyed chain of the whole log and the head so that every link holds."""
    owner = await asyncpg.connect(url)
    try:
        async with owner.transaction():
            await owner.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
            await owner.execute(f"UPDATE events SET data = '{EVIL}' WHERE position = 2")
            if strip:
                await owner.execute("UPDATE events SET signature = NULL")
            rows = await owner.fetch("SELECT * FROM events ORDER BY position")
            previous = GENESIS
            for row in rows:
                event = _event_of(row)
                previous = link(previous, event)
                await owner.execute(
                    "UPDATE events SET chain = $1 WHERE position = $2", previous, row["position"]
                )
            await owner.execute("UPDATE store_head SET chain = $1", previous)
            await owner.execute(f"UPDATE items SET value = '{EVIL}' WHERE name = 'beta'")
            await owner.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    finally:
        await owner.close()


def _event_of(row: Any) -> Event:
    data = orjson.loads(row["data"]) if row["data"] is not None else None
    return Event(
        row["id"], row["position"], row["epoch"], row["type"], row["kind"], row["name"],
        row["version"], data, orjson.loads(row["metadata"]), row["recorded_at"],
    )  # fmt: skip


@pytest.mark.parametrize("strip", [False, True], ids=["signatures kept", "signatures stripped"])
async def test_a_log_rewritten_and_rechained_by_a_superuser_fails_on_its_signatures(
    db_url: str, admin: httpx.AsyncClient, strip: bool
) -> None:
    """The chain is unkeyed, so a superuser can make every link hold again; the signatures
    need the cluster secret, which the database never sees."""
    await history(admin)
    await _rechain(db_url, strip=strip)

    body = (await admin.get("/audit/verify")).json()

    assert body["ok"] is False, body
    assert body["problem"] == "signature"
    if not strip:
        assert body["position"] == 2  # the one event whose content changed under its signature
