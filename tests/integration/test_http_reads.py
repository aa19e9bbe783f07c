"""The read side of an instance's HTTP API: items, state in the past, diffs, the event stream,
the audit check and the status endpoints."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from shadowline.bootstrap import Instance
from shadowline.domain.events import format_time, parse_time
from tests.conftest import PASSWORDS, http_client

ACME = {"region": "eu10", "subaccount_id": "a1"}
MAPPING = {
    "virtual_host": "erp.virtual",
    "virtual_port": 443,
    "internal_host": "erp.internal",
    "internal_port": 8443,
    "protocol": "HTTPS",
}
ENVELOPE_FIELDS = {
    "id",
    "position",
    "epoch",
    "type",
    "kind",
    "name",
    "version",
    "data",
    "metadata",
    "recorded_at",
    "chain",
}


async def put(client: httpx.AsyncClient, key: str, value: Any, **headers: str) -> int:
    """PUT one item; returns the position of its event."""
    response = await client.put(f"/config/{key}", json=value, headers=headers)
    assert response.status_code in (200, 201), response.text
    return int(response.json()["position"])


async def events(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/events", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.text == "" or response.text.endswith("\n"), response.text
    return [orjson.loads(line) for line in response.text.splitlines()]


def assert_invalid(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert errors and all(set(e) == {"path", "message"} for e in errors), errors
    # Query errors may name the location too ("query.at"); the field itself must be there.
    assert any(e["path"].split(".")[-1] == field for e in errors), errors


def between(earlier: str, later: str) -> str:
    first, second = parse_time(earlier), parse_time(later)
    assert first < second, (earlier, later)
    return format_time(first + (second - first) / 2)


async def write_history(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Five events: acme v1, erp v1, acme v2, acme deleted, beta v1. Returns their envelopes,
    with a few milliseconds between them so that times between writes exist."""
    await put(client, "subaccount/acme", ACME)
    await asyncio.sleep(0.005)
    await put(client, "system-mapping/erp", MAPPING)
    await asyncio.sleep(0.005)
    await put(client, "subaccount/acme", {**ACME, "region": "us10"})
    await asyncio.sleep(0.005)
    assert (await client.delete("/config/subaccount/acme")).status_code == 200
    await asyncio.sleep(0.005)
    await put(client, "subaccount/beta", {**ACME, "subaccount_id": "b1"})
    return await events(client)


# -- items and state -------------------------------------------------------------------------


async def test_an_item_reads_back_as_its_value_and_version(admin: httpx.AsyncClient) -> None:
    await put(admin, "system-mapping/erp", MAPPING)
    await put(admin, "system-mapping/erp", {**MAPPING, "virtual_port": 444})

    response = await admin.get("/config/system-mapping/erp")
    missing = await admin.get("/config/system-mapping/nope")

    assert response.status_code == 200, response.text
    assert response.json() == {"value": {**MAPPING, "virtual_port": 444}, "version": 2}
    assert response.headers["etag"] == '"2"'
    assert missing.status_code == 404, missing.text
    assert "system-mapping/nope" in missing.json()["error"]


async def test_the_whole_config_is_keyed_by_kind_and_name_at_the_head_position(
    admin: httpx.AsyncClient,
) -> None:
    await write_history(admin)

    response = await admin.get("/config")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["position"] == 5
    assert body["items"] == {
        "system-mapping/erp": MAPPING,
        "subaccount/beta": {**ACME, "subaccount_id": "b1"},
    }


async def test_config_at_a_position_is_the_state_right_after_it_and_404_beyond_the_head(
    admin: httpx.AsyncClient,
) -> None:
    await write_history(admin)
    expected = {
        0: {},
        1: {"subaccount/acme": ACME},
        2: {"subaccount/acme": ACME, "system-mapping/erp": MAPPING},
        3: {"subaccount/acme": {**ACME, "region": "us10"}, "system-mapping/erp": MAPPING},
        4: {"system-mapping/erp": MAPPING},
        5: {"system-mapping/erp": MAPPING, "subaccount/beta": {**ACME, "subaccount_id": "b1"}},
    }

    for position, items in expected.items():
        response = await admin.get("/config", params={"at": position})

        assert response.status_code == 200, response.text
        assert response.json() == {"position": position, "items": items}, position

    beyond = await admin.get("/config", params={"at": 6})
    assert beyond.status_code == 404, beyond.text
    assert "error" in beyond.json()


async def test_config_as_of_a_time_gives_the_state_of_the_last_write_before_it(
    admin: httpx.AsyncClient,
) -> None:
    history = await write_history(admin)
    stamps = [e["recorded_at"] for e in history]
    before_all = format_time(parse_time(stamps[0]) - timedelta(seconds=1))

    after_first = await admin.get("/config", params={"as_of": between(stamps[0], stamps[1])})
    after_third = await admin.get("/config", params={"as_of": between(stamps[2], stamps[3])})
    exactly_fourth = await admin.get("/config", params={"as_of": stamps[3]})

    assert after_first.status_code == 200, after_first.text
    assert after_first.json() == {"position": 1, "items": {"subaccount/acme": ACME}}
    assert after_third.json() == {
        "position": 3,
        "items": {"subaccount/acme": {**ACME, "region": "us10"}, "system-mapping/erp": MAPPING},
    }
    assert exactly_fourth.json() == {"position": 4, "items": {"system-mapping/erp": MAPPING}}
    for moment in (before_all, "2001-01-01T10:00:00+02:00"):
        early = await admin.get("/config", params={"as_of": moment})
        assert early.status_code == 200, early.text
        assert early.json() == {"position": 0, "items": {}}, moment


async def test_config_as_of_a_time_outside_the_database_range_is_not_a_503(
    admin: httpx.AsyncClient,
) -> None:
    await put(admin, "subaccount/acme", ACME)

    # Bad input is the client's fault (422) or simply before/after every event (200); a 503
    # would tell load balancers and clients that the store is down.
    for as_of in ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00"]:
        response = await admin.get("/config", params={"as_of": as_of})

        assert response.status_code in (200, 422), (as_of, response.text)


async def test_a_diff_between_positions_lists_added_removed_and_changed_items(
    admin: httpx.AsyncClient,
) -> None:
    await write_history(admin)

    response = await admin.get("/config/diff", params={"from": 1, "to": 5})
    to_head = await admin.get("/config/diff", params={"from": 2})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "from": 1,
        "to": 5,
        "added": {
            "system-mapping/erp": MAPPING,
            "subaccount/beta": {**ACME, "subaccount_id": "b1"},
        },
        "removed": {"subaccount/acme": ACME},
        "changed": {},
    }
    assert to_head.json()["to"] == 5
    changed = (await admin.get("/config/diff", params={"from": 1, "to": 3})).json()
    assert changed["changed"] == {
        "subaccount/acme": {"from": ACME, "to": {**ACME, "region": "us10"}}
    }
    assert changed["added"] == {"system-mapping/erp": MAPPING} and changed["removed"] == {}


async def test_a_diff_from_a_time_works_like_from_a_position(admin: httpx.AsyncClient) -> None:
    history = await write_history(admin)
    moment = between(history[0]["recorded_at"], history[1]["recorded_at"])

    by_time = await admin.get("/config/diff", params={"from": moment, "to": 3})
    by_position = await admin.get("/config/diff", params={"from": 1, "to": 3})

    assert by_time.status_code == 200, by_time.text
    assert by_time.json() == by_position.json()
    assert by_time.json()["from"] == 1


async def test_a_diff_with_a_bad_point_is_422_or_404(admin: httpx.AsyncClient) -> None:
    await put(admin, "subaccount/acme", ACME)

    not_a_time = await admin.get("/config/diff", params={"from": "last tuesday"})
    beyond = await admin.get("/config/diff", params={"from": 0, "to": 9})
    missing = await admin.get("/config/diff")

    assert_invalid(not_a_time, "from")
    assert beyond.status_code == 404, beyond.text
    assert_invalid(missing, "from")


async def test_a_diff_from_a_non_ascii_digit_is_422_not_500(instance: Instance) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=instance.asgi, raise_app_exceptions=False),
        base_url="http://instance",
        auth=("admin", PASSWORDS["admin"]),
    ) as client:
        response = await client.get("/config/diff", params={"from": "\u00b2"})

    assert_invalid(response, "from")


# -- the event stream ------------------------------------------------------------------------


async def test_events_stream_as_ndjson_in_position_order_after_a_position(
    admin: httpx.AsyncClient,
) -> None:
    await write_history(admin)

    everything = await events(admin)
    middle = await events(admin, after=1, limit=2)
    tail = await events(admin, after=4, limit=10)
    past_head = await events(admin, after=5)

    assert [e["position"] for e in everything] == [1, 2, 3, 4, 5]
    assert [e["position"] for e in middle] == [2, 3]
    assert [e["position"] for e in tail] == [5]
    assert past_head == []
    assert [(e["type"], e["kind"], e["name"], e["version"]) for e in everything] == [
        ("ConfigPut", "subaccount", "acme", 1),
        ("ConfigPut", "system-mapping", "erp", 1),
        ("ConfigPut", "subaccount", "acme", 2),
        ("ConfigDeleted", "subaccount", "acme", 3),
        ("ConfigPut", "subaccount", "beta", 1),
    ]


async def test_an_event_envelope_carries_actor_request_id_reason_and_chain(
    admin: httpx.AsyncClient,
) -> None:
    await put(
        admin,
        "subaccount/acme",
        ACME,
        **{"X-Request-Id": "req-42", "X-Reason": "ticket CHG-7"},
    )
    await put(admin, "subaccount/beta", ACME)

    first, second = await events(admin)

    assert set(first) >= ENVELOPE_FIELDS
    assert first["position"] == 1 and first["epoch"] == 1 and first["version"] == 1
    assert (first["type"], first["kind"], first["name"]) == ("ConfigPut", "subaccount", "acme")
    assert first["data"] == ACME
    assert first["metadata"]["actor"] == "admin"
    assert first["metadata"]["request_id"] == "req-42"
    assert first["metadata"]["reason"] == "ticket CHG-7"
    assert re.fullmatch(r"[0-9a-f]{64}", first["chain"])
    assert first["chain"] != second["chain"]
    assert first["id"] != second["id"]
    assert parse_time(first["recorded_at"]) <= parse_time(second["recorded_at"])
    assert abs(datetime.now(UTC) - parse_time(first["recorded_at"])) < timedelta(minutes=1)
    # Without the header the instance still gives every request an id of its own.
    assert second["metadata"]["request_id"] not in ("", None, "req-42")
    assert "reason" not in second["metadata"]


async def test_events_can_be_filtered_by_kind_name_and_actor(admin: httpx.AsyncClient) -> None:
    await write_history(admin)

    mappings = await events(admin, kind="system-mapping")
    acme = await events(admin, kind="subaccount", name="acme")
    by_admin = await events(admin, actor="admin")
    by_nobody = await events(admin, actor="mallory")

    assert [e["position"] for e in mappings] == [2]
    assert [e["position"] for e in acme] == [1, 3, 4]
    assert [e["position"] for e in by_admin] == [1, 2, 3, 4, 5]
    assert by_nobody == []
    assert [e["position"] for e in await events(admin, kind="subaccount", after=3)] == [4, 5]


async def test_events_can_be_filtered_by_event_type_one_or_several(
    admin: httpx.AsyncClient,
) -> None:
    await write_history(admin)

    deleted = await events(admin, type="ConfigDeleted")
    both = await events(admin, type=["ConfigDeleted", "ConfigPut"], kind="subaccount")
    unknown = await events(admin, type="NoSuchType")

    assert [e["position"] for e in deleted] == [4]
    assert [e["position"] for e in both] == [1, 3, 4, 5]
    assert unknown == []
    response = await admin.get("/events", params={"type": "Config\x00Put"})
    assert_invalid(response, "type")


async def test_events_can_be_filtered_by_time(admin: httpx.AsyncClient) -> None:
    history = await write_history(admin)
    stamps = [e["recorded_at"] for e in history]

    since = await events(admin, since=between(stamps[1], stamps[2]))
    until = await events(admin, until=between(stamps[1], stamps[2]))
    window = await events(admin, since=stamps[1], until=stamps[3])
    bad = await admin.get("/events", params={"since": "soon"})

    assert [e["position"] for e in since] == [3, 4, 5]
    assert [e["position"] for e in until] == [1, 2]
    assert [e["position"] for e in window] == [2, 3, 4]
    assert_invalid(bad, "since")


async def test_odd_event_queries_answer_cleanly_instead_of_breaking_the_stream(
    admin: httpx.AsyncClient,
) -> None:
    # Errors raised after the 200 header has gone out cannot become a status code any more: the
    # client sees a truncated stream. These queries must be refused (422) or answered in full.
    await put(admin, "subaccount/acme", ACME)

    for params, answer in [
        ({"kind": "sub\u0000account"}, []),
        ({"actor": "ad\u0000min"}, []),
        ({"after": str(10**22)}, []),
        ({"since": "0001-01-01T00:00:00+01:00"}, [1]),
    ]:
        response = await admin.get("/events", params=params)

        assert response.status_code in (200, 422), (params, response.text)
        if response.status_code == 200:
            found = [orjson.loads(line)["position"] for line in response.text.splitlines()]
            assert found == answer, params


async def test_waiting_for_events_returns_as_soon_as_a_write_lands(
    admin: httpx.AsyncClient,
) -> None:
    head = await put(admin, "subaccount/acme", ACME)
    started = time.monotonic()

    waiting = asyncio.create_task(admin.get("/events", params={"after": head, "wait": 5}))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await put(admin, "subaccount/beta", ACME)
    response = await asyncio.wait_for(waiting, timeout=5)

    assert time.monotonic() - started < 3
    assert response.status_code == 200, response.text
    arrived = [orjson.loads(line) for line in response.text.splitlines()]
    assert [(e["position"], e["name"]) for e in arrived] == [(head + 1, "beta")]


async def test_waiting_for_events_returns_an_empty_body_after_the_wait_when_nothing_happens(
    admin: httpx.AsyncClient,
) -> None:
    head = await put(admin, "subaccount/acme", ACME)
    started = time.monotonic()

    response = await admin.get("/events", params={"after": head, "wait": 0.5})

    assert time.monotonic() - started >= 0.45
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.text == ""


# -- audit and status ------------------------------------------------------------------------


async def test_the_audit_check_verifies_the_whole_chain(admin: httpx.AsyncClient) -> None:
    empty = await admin.get("/audit/verify")
    await write_history(admin)

    response = await admin.get("/audit/verify")

    assert empty.status_code == 200, empty.text
    assert empty.json()["ok"] is True and empty.json()["checked"] == 0
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    assert body["checked"] == 5
    head = (await events(admin, after=4))[0]
    assert body.get("chain", head["chain"]) == head["chain"]


async def test_health_and_probes_need_no_credentials_and_show_a_standalone_master(
    instance: Instance, admin: httpx.AsyncClient
) -> None:
    await put(admin, "subaccount/acme", ACME)

    async with http_client(instance, None) as anonymous:
        response = await anonymous.get("/health")
        master = await anonymous.get("/master")
        shadow = await anonymous.get("/shadow")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "instance": instance.settings.instance,
        "role": "standalone",
        "epoch": 1,
        "position": 1,
    }
    assert master.status_code == 200, master.text
    assert master.json()["role"] == "standalone"
    assert shadow.status_code == 503, shadow.text


async def test_a_viewer_may_read_the_ha_status(instance: Instance) -> None:
    async with http_client(instance, "vic") as viewer:
        response = await viewer.get("/ha")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["role"] == "standalone"
    assert body["epoch"] == 1
    assert body["position"] == 0
    for field in ("replication", "shadow", "master"):
        assert field in body and body[field] is None, field


async def test_metrics_are_prometheus_text_with_the_committed_position(
    admin: httpx.AsyncClient,
) -> None:
    await write_history(admin)

    response = await admin.get("/metrics")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE shadowline_committed_position gauge" in response.text
    assert re.search(r"^shadowline_committed_position 5(\.0)?$", response.text, re.M)


async def test_the_root_page_is_the_high_availability_screen_in_html(
    instance: Instance, admin: httpx.AsyncClient
) -> None:
    response = await admin.get("/")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.lstrip().lower().startswith("<!doctype html>")
    assert "High Availability" in response.text
    assert instance.settings.instance in response.text
