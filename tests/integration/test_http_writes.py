"""The write side of an instance's HTTP API: PUT and DELETE /config/{kind}/{name}.

Every test checks the status code and the body, because clients act on both: a 409 must name
the current version, a 422 must point at the offending JSON path.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from shadowline.bootstrap import Instance
from tests.conftest import PASSWORDS, http_client, started

SUBACCOUNT = {"region": "eu10", "subaccount_id": "a1"}
MAPPING = {
    "virtual_host": "erp.virtual",
    "virtual_port": 443,
    "internal_host": "erp.internal",
    "internal_port": 8443,
    "protocol": "HTTPS",
}
LOCAL_VALUES = {
    "log-level": ("shadowline.test-http-local", {"level": "WARNING"}),
    "ui-certificate": (
        "ui",
        {"certificate_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
    ),
    "snc": ("snc", {"library_path": "/usr/lib/libsapcrypto.so", "my_name": "p:CN=shadowline"}),
}


def lenient_client(inst: Instance, user: str = "admin") -> httpx.AsyncClient:
    """Like `http_client`, but an unhandled error comes back as a 500 instead of raising, so a
    test can say which status it expected."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=inst.asgi, raise_app_exceptions=False),
        base_url="http://instance",
        auth=(user, PASSWORDS[user]),
    )


def assert_invalid(response: httpx.Response, path: str) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    errors: list[dict[str, Any]] = response.json()["errors"]
    assert errors, response.text
    for error in errors:
        assert set(error) == {"path", "message"}, error
        assert isinstance(error["message"], str) and error["message"], error
    assert path in [e["path"] for e in errors], errors
    return errors


async def event_count(client: httpx.AsyncClient) -> int:
    response = await client.get("/events")
    assert response.status_code == 200, response.text
    return len(response.text.splitlines())


# -- PUT, versions and If-Match ----------------------------------------------------------------


async def test_a_first_put_creates_the_item_with_201_and_an_etag(admin: httpx.AsyncClient) -> None:
    response = await admin.put("/config/system-mapping/erp", json=MAPPING)

    assert response.status_code == 201, response.text
    assert response.json() == {
        "kind": "system-mapping",
        "name": "erp",
        "version": 1,
        "position": 1,
        "epoch": 1,
    }
    assert response.headers["etag"] == '"1"'
    assert response.headers["content-type"].startswith("application/json")


async def test_a_second_put_updates_the_item_with_200_and_version_2(
    admin: httpx.AsyncClient,
) -> None:
    await admin.put("/config/subaccount/acme", json=SUBACCOUNT)

    response = await admin.put("/config/subaccount/acme", json={**SUBACCOUNT, "region": "us10"})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "kind": "subaccount",
        "name": "acme",
        "version": 2,
        "position": 2,
        "epoch": 1,
    }
    assert response.headers["etag"] == '"2"'
    got = await admin.get("/config/subaccount/acme")
    assert got.json() == {"value": {**SUBACCOUNT, "region": "us10"}, "version": 2}


async def test_an_if_match_naming_the_current_version_is_accepted_in_any_usual_form(
    admin: httpx.AsyncClient,
) -> None:
    await admin.put("/config/subaccount/acme", json=SUBACCOUNT)

    for version, if_match in enumerate(['"1"', "2", 'W/"3"', ' "4" '], start=1):
        response = await admin.put(
            "/config/subaccount/acme",
            json={**SUBACCOUNT, "display_name": f"v{version + 1}"},
            headers={"If-Match": if_match},
        )

        assert response.status_code == 200, (if_match, response.text)
        assert response.json()["version"] == version + 1, if_match
        assert response.headers["etag"] == f'"{version + 1}"'


async def test_a_stale_if_match_is_refused_with_409_naming_the_current_version(
    admin: httpx.AsyncClient,
) -> None:
    await admin.put("/config/subaccount/acme", json=SUBACCOUNT)
    await admin.put("/config/subaccount/acme", json={**SUBACCOUNT, "region": "us10"})

    response = await admin.put(
        "/config/subaccount/acme",
        json={**SUBACCOUNT, "region": "jp10"},
        headers={"If-Match": '"1"'},
    )

    assert response.status_code == 409, response.text
    body = response.json()
    assert body["version"] == 2
    assert body["expected"] == 1
    assert "acme" in body["error"]
    stale_delete = await admin.delete("/config/subaccount/acme", headers={"If-Match": '"1"'})
    assert stale_delete.status_code == 409, stale_delete.text
    assert stale_delete.json()["version"] == 2
    got = await admin.get("/config/subaccount/acme")
    assert got.json() == {"value": {**SUBACCOUNT, "region": "us10"}, "version": 2}
    assert (await admin.get("/health")).json()["position"] == 2


async def test_an_if_match_that_is_not_a_number_is_refused_with_422(
    admin: httpx.AsyncClient,
) -> None:
    await admin.put("/config/subaccount/acme", json=SUBACCOUNT)

    for if_match in ['"abc"', "-1", '"1.5"', '""', '"0x1"']:
        response = await admin.put(
            "/config/subaccount/acme", json=SUBACCOUNT, headers={"If-Match": if_match}
        )

        assert_invalid(response, "If-Match")
    assert (await admin.get("/config/subaccount/acme")).json()["version"] == 1


async def test_an_if_match_with_a_non_ascii_digit_is_refused_with_422_not_500(
    instance: Instance,
) -> None:
    # '²' (latin-1 0xB2) passes str.isdigit() but int() refuses it.
    async with lenient_client(instance) as client:
        await client.put("/config/subaccount/acme", json=SUBACCOUNT)

        response = await client.put(
            "/config/subaccount/acme", json=SUBACCOUNT, headers={b"If-Match": b'"\xb2"'}
        )

    assert_invalid(response, "If-Match")


async def test_an_if_match_beyond_any_version_is_a_conflict_not_a_500(instance: Instance) -> None:
    async with lenient_client(instance) as client:
        await client.put("/config/subaccount/acme", json=SUBACCOUNT)

        response = await client.put(
            "/config/subaccount/acme", json=SUBACCOUNT, headers={"If-Match": '"' + "9" * 30 + '"'}
        )

    assert response.status_code in (409, 422), response.text
    assert "error" in response.json()


# -- DELETE ----------------------------------------------------------------------------------


async def test_a_delete_answers_200_with_the_position_of_its_event(
    admin: httpx.AsyncClient,
) -> None:
    await admin.put("/config/subaccount/acme", json=SUBACCOUNT)

    response = await admin.delete("/config/subaccount/acme")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "kind": "subaccount",
        "name": "acme",
        "version": 2,
        "position": 2,
        "epoch": 1,
    }
    assert (await admin.get("/config/subaccount/acme")).status_code == 404
    assert (await admin.get("/health")).json()["position"] == 2


async def test_deleting_an_item_that_does_not_exist_is_404(admin: httpx.AsyncClient) -> None:
    await admin.put("/config/subaccount/acme", json=SUBACCOUNT)
    await admin.delete("/config/subaccount/acme")

    never = await admin.delete("/config/subaccount/ghost")
    again = await admin.delete("/config/subaccount/acme")

    assert never.status_code == 404, never.text
    assert "subaccount/ghost" in never.json()["error"]
    assert again.status_code == 404, again.text
    assert (await admin.get("/health")).json()["position"] == 2


async def test_an_item_recreated_after_a_delete_continues_its_version(
    admin: httpx.AsyncClient,
) -> None:
    await admin.put("/config/subaccount/acme", json=SUBACCOUNT)
    await admin.delete("/config/subaccount/acme")

    response = await admin.put("/config/subaccount/acme", json={**SUBACCOUNT, "region": "us10"})

    assert response.status_code == 201, response.text
    assert response.json() == {
        "kind": "subaccount",
        "name": "acme",
        "version": 3,
        "position": 3,
        "epoch": 1,
    }
    assert response.headers["etag"] == '"3"'
    got = await admin.get("/config/subaccount/acme")
    assert got.json() == {"value": {**SUBACCOUNT, "region": "us10"}, "version": 3}


# -- 422 and 400 -----------------------------------------------------------------------------

SCHEMA_VIOLATIONS = [
    # (what is wrong, kind, value, the JSON path the 422 must name)
    ("port above 65535", "system-mapping", {**MAPPING, "virtual_port": 70000}, "$.virtual_port"),
    ("port zero", "system-mapping", {**MAPPING, "internal_port": 0}, "$.internal_port"),
    ("port as a string", "system-mapping", {**MAPPING, "virtual_port": "443"}, "$.virtual_port"),
    ("additional property", "system-mapping", {**MAPPING, "colour": "blue"}, "$"),
    (
        "missing required field",
        "system-mapping",
        {k: v for k, v in MAPPING.items() if k != "protocol"},
        "$",
    ),
    ("wrong enum", "system-mapping", {**MAPPING, "protocol": "GOPHER"}, "$.protocol"),
    ("missing subaccount_id", "subaccount", {"region": "eu10"}, "$"),
    ("empty region", "subaccount", {**SUBACCOUNT, "region": ""}, "$.region"),
    (
        "path without a slash",
        "resource",
        {"system_mapping": "erp", "path": "no-slash", "match": "exact"},
        "$.path",
    ),
    (
        "method not a string",
        "resource",
        {"system_mapping": "erp", "path": "/a", "match": "exact", "methods": ["GET", 1]},
        "$.methods[1]",
    ),
    ("local kind enum", "log-level", {"level": "TRACE"}, "$.level"),
]


async def test_every_schema_violation_is_422_naming_its_json_path(admin: httpx.AsyncClient) -> None:
    for what, kind, value, path in SCHEMA_VIOLATIONS:
        response = await admin.put(f"/config/{kind}/item", json=value)

        errors = assert_invalid(response, path)
        assert all(e["path"].startswith("$") for e in errors), (what, errors)
        assert response.json()["error"], what
        assert (await admin.get(f"/config/{kind}/item")).status_code == 404, what
    assert (await admin.get("/health")).json()["position"] == 0


async def test_a_schema_violation_lists_every_error(admin: httpx.AsyncClient) -> None:
    value = {**MAPPING, "virtual_port": 70000, "protocol": "GOPHER"}

    response = await admin.put("/config/system-mapping/erp", json=value)

    errors = assert_invalid(response, "$.virtual_port")
    assert {e["path"] for e in errors} >= {"$.virtual_port", "$.protocol"}


async def test_an_unknown_kind_is_422_on_the_kind_path(admin: httpx.AsyncClient) -> None:
    put = await admin.put("/config/printer/lobby", json={"model": "x"})
    delete = await admin.delete("/config/printer/lobby")
    get = await admin.get("/config/printer/lobby")

    errors = assert_invalid(put, "kind")
    assert "printer" in next(e["message"] for e in errors if e["path"] == "kind")
    assert_invalid(delete, "kind")
    assert_invalid(get, "kind")
    assert (await admin.get("/health")).json()["position"] == 0


async def test_a_bad_name_is_422_on_the_name_path(admin: httpx.AsyncClient) -> None:
    # uppercase, too long, leading dot, leading dash, a space, a NUL
    for name in ["Acme", "a" * 64, ".acme", "-acme", "acme%20corp", "acme%00"]:
        put = await admin.put(f"/config/subaccount/{name}", json=SUBACCOUNT)
        delete = await admin.delete(f"/config/subaccount/{name}")

        assert_invalid(put, "name")
        assert_invalid(delete, "name")
    assert (await admin.get("/health")).json()["position"] == 0

    longest = "a" + "b" * 62
    response = await admin.put(f"/config/subaccount/{longest}", json=SUBACCOUNT)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == longest


async def test_a_malformed_json_body_is_400_with_the_root_path(admin: httpx.AsyncClient) -> None:
    for body in [b"{", b"", b"{'region': 'eu10'}", b'{"region": "eu10",}', b"\xff\xfe", b"NaN"]:
        response = await admin.put(
            "/config/subaccount/acme", content=body, headers={"Content-Type": "application/json"}
        )

        assert response.status_code == 400, (body, response.text)
        errors = response.json()["errors"]
        assert errors[0]["path"] == "$", body
        assert errors[0]["message"], body
    assert (await admin.get("/health")).json()["position"] == 0


async def test_valid_json_of_the_wrong_type_is_422(admin: httpx.AsyncClient) -> None:
    for body in [
        b'[{"region": "eu10", "subaccount_id": "a1"}]',
        b'"acme"',
        b"42",
        b"null",
        b"true",
    ]:
        response = await admin.put(
            "/config/subaccount/acme", content=body, headers={"Content-Type": "application/json"}
        )

        assert_invalid(response, "$")
    assert (await admin.get("/health")).json()["position"] == 0


async def test_a_string_containing_nul_is_422_not_500(instance: Instance) -> None:
    # PostgreSQL cannot store U+0000 in text or jsonb: it must be refused before the database.
    values = [
        ("subaccount", {**SUBACCOUNT, "display_name": "Ac\u0000me"}, "$.display_name"),
        ("subaccount", {"region": "eu\u000010", "subaccount_id": "a1"}, "$.region"),
        ("resource", {"system_mapping": "erp", "path": "/a\u0000", "match": "prefix"}, "$.path"),
        ("snc", {"library_path": "/lib\u0000", "my_name": "p:CN=x"}, "$.library_path"),
    ]
    async with lenient_client(instance) as client:
        for kind, value, path in values:
            response = await client.put(f"/config/{kind}/item", json=value)

            assert response.status_code == 422, response.text
            errors = response.json()["errors"]
            # The root or, better, the field itself.
            assert {e["path"] for e in errors} <= {"$", path}, errors
            assert (await client.get(f"/config/{kind}/item")).status_code == 404, value
        assert (await client.get("/health")).json()["position"] == 0


# -- 413 -------------------------------------------------------------------------------------


@pytest.fixture
async def small_limit(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        started(db_url, max_body_bytes=2048) as inst,
        http_client(inst, "admin") as client,
    ):
        yield client


def oversized() -> dict[str, str]:
    return {**SUBACCOUNT, "display_name": "x" * 150, "location_id": "y" * 100, "pad": "z" * 3000}


async def test_a_body_over_the_limit_is_413_when_content_length_says_so(
    small_limit: httpx.AsyncClient,
) -> None:
    response = await small_limit.put("/config/subaccount/acme", json=oversized())

    assert response.request.headers["content-length"]
    assert response.status_code == 413, response.text
    assert "error" in response.json()
    assert (await small_limit.get("/health")).json()["position"] == 0


async def test_a_streamed_body_is_413_over_the_limit_and_accepted_under_it(
    small_limit: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"region": "eu10", "subaccount_id": "a1", "display_name": "'
        for _ in range(8):
            yield b"x" * 512
        yield b'"}'

    response = await small_limit.put("/config/subaccount/acme", content=chunks())

    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert "error" in response.json()
    assert (await small_limit.get("/health")).json()["position"] == 0

    async def small_chunks() -> AsyncIterator[bytes]:
        yield b'{"region": "eu10", '
        yield b'"subaccount_id": "a1"}'

    response = await small_limit.put("/config/subaccount/acme", content=small_chunks())
    assert response.status_code == 201, response.text


# -- local-only kinds ------------------------------------------------------------------------


@pytest.fixture
def restore_logger_levels() -> Iterator[None]:
    names = [LOCAL_VALUES["log-level"][0], "shadowline.test-http-level"]
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restore_logger_levels")
async def test_local_kinds_are_accepted_but_never_enter_the_event_log(
    admin: httpx.AsyncClient,
) -> None:
    await admin.put("/config/subaccount/acme", json=SUBACCOUNT)

    for kind, (name, value) in LOCAL_VALUES.items():
        response = await admin.put(f"/config/{kind}/{name}", json=value)

        assert response.status_code == 201, response.text
        body = response.json()
        assert body["kind"] == kind and body["name"] == name and body["version"] == 1
        assert body["position"] is None
        got = await admin.get(f"/config/{kind}/{name}")
        assert got.json() == {"value": value, "version": 1}

    assert (await admin.get("/health")).json()["position"] == 1
    events = [line for line in (await admin.get("/events")).text.splitlines() if line]
    assert len(events) == 1 and '"subaccount"' in events[0]
    config = (await admin.get("/config")).json()
    assert config["position"] == 1
    assert config["items"] == {"subaccount/acme": SUBACCOUNT}
    assert config["local"] == {f"{k}/{n}": v for k, (n, v) in LOCAL_VALUES.items()}


async def test_local_kinds_keep_versions_and_honour_if_match(admin: httpx.AsyncClient) -> None:
    name, value = LOCAL_VALUES["snc"]
    await admin.put(f"/config/snc/{name}", json=value)

    updated = await admin.put(f"/config/snc/{name}", json=value, headers={"If-Match": '"1"'})
    stale = await admin.put(f"/config/snc/{name}", json=value, headers={"If-Match": '"1"'})
    deleted = await admin.delete(f"/config/snc/{name}")
    missing = await admin.delete(f"/config/snc/{name}")

    assert updated.status_code == 200 and updated.json()["version"] == 2, updated.text
    assert stale.status_code == 409 and stale.json()["version"] == 2, stale.text
    assert deleted.status_code == 200 and deleted.json()["position"] is None, deleted.text
    assert missing.status_code == 404, missing.text
    assert await event_count(admin) == 0
    assert (await admin.get("/health")).json()["position"] == 0


@pytest.mark.usefixtures("restore_logger_levels")
async def test_putting_a_log_level_changes_the_python_logger_level(
    admin: httpx.AsyncClient,
) -> None:
    logger = logging.getLogger("shadowline.test-http-level")
    logger.setLevel(logging.INFO)

    debug = await admin.put("/config/log-level/shadowline.test-http-level", json={"level": "DEBUG"})
    assert debug.status_code == 201, debug.text
    assert logger.level == logging.DEBUG

    error = await admin.put("/config/log-level/shadowline.test-http-level", json={"level": "ERROR"})
    assert error.status_code == 200, error.text
    assert logger.level == logging.ERROR
    assert not logger.isEnabledFor(logging.WARNING)


@pytest.mark.usefixtures("restore_logger_levels")
async def test_a_stored_log_level_takes_effect_again_after_a_restart(db_url: str) -> None:
    logger = logging.getLogger("shadowline.test-http-level")
    async with started(db_url) as first, http_client(first) as client:
        response = await client.put(
            "/config/log-level/shadowline.test-http-level", json={"level": "ERROR"}
        )
        assert response.status_code == 201, response.text
    logger.setLevel(logging.NOTSET)

    async with started(db_url) as second, http_client(second) as client:
        got = await client.get("/config/log-level/shadowline.test-http-level")
        assert got.json() == {"value": {"level": "ERROR"}, "version": 1}
        assert logger.level == logging.ERROR
