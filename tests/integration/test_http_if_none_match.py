"""Create-only writes (If-None-Match: *), whole numbers stored as integers, and what the OpenAPI
document and the refusals of paths and methods say (the API's own error shape everywhere)."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from tests.integration.test_http_writes import MAPPING, SUBACCOUNT, assert_invalid, event_count

CREATE_ONLY = {"If-None-Match": "*"}


async def test_if_none_match_star_creates_an_absent_item(admin: httpx.AsyncClient) -> None:
    response = await admin.put("/config/subaccount/acme", json=SUBACCOUNT, headers=CREATE_ONLY)

    assert response.status_code == 201, response.text
    assert response.json()["version"] == 1


async def test_if_none_match_star_is_refused_with_412_when_the_item_exists_and_nothing_is_written(
    admin: httpx.AsyncClient,
) -> None:
    await admin.put("/config/subaccount/acme", json=SUBACCOUNT)
    before = await event_count(admin)

    changed = {**SUBACCOUNT, "display_name": "replaced?"}
    response = await admin.put("/config/subaccount/acme", json=changed, headers=CREATE_ONLY)

    assert response.status_code == 412, response.text
    assert response.json() == {
        "error": "subaccount/acme exists (version 1); If-None-Match: * creates only",
        "version": 1,
    }
    assert await event_count(admin) == before
    kept = await admin.get("/config/subaccount/acme")
    assert kept.json() == {"value": SUBACCOUNT, "version": 1}


async def test_if_none_match_star_creates_again_after_a_delete_continuing_the_versions(
    admin: httpx.AsyncClient,
) -> None:
    await admin.put("/config/subaccount/acme", json=SUBACCOUNT)
    await admin.delete("/config/subaccount/acme")

    response = await admin.put("/config/subaccount/acme", json=SUBACCOUNT, headers=CREATE_ONLY)

    assert response.status_code == 201, response.text
    assert response.json()["version"] == 3


async def test_if_none_match_star_holds_for_a_local_kind_too(admin: httpx.AsyncClient) -> None:
    path = "/config/log-level/shadowline.test-create-only"
    first = await admin.put(path, json={"level": "INFO"}, headers=CREATE_ONLY)
    second = await admin.put(path, json={"level": "DEBUG"}, headers=CREATE_ONLY)

    assert first.status_code == 201, first.text
    assert second.status_code == 412, second.text
    assert (await admin.get(path)).json() == {"value": {"level": "INFO"}, "version": 1}


async def test_of_concurrent_create_only_writes_exactly_one_creates(
    admin: httpx.AsyncClient,
) -> None:
    async def create(n: int) -> httpx.Response:
        value = {**SUBACCOUNT, "display_name": f"writer {n}"}
        return await admin.put("/config/subaccount/race", json=value, headers=CREATE_ONLY)

    answers = await asyncio.gather(*(create(n) for n in range(8)))

    assert sorted(a.status_code for a in answers) == [201] + [412] * 7, [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 201)
    assert winner.json()["version"] == 1


async def test_if_none_match_other_than_star_is_refused_with_422(admin: httpx.AsyncClient) -> None:
    response = await admin.put(
        "/config/subaccount/acme", json=SUBACCOUNT, headers={"If-None-Match": '"1"'}
    )

    assert_invalid(response, "If-None-Match")


async def test_if_match_keeps_its_meaning_beside_create_only(admin: httpx.AsyncClient) -> None:
    absent = await admin.put(
        "/config/subaccount/acme", json=SUBACCOUNT, headers={"If-Match": '"0"'}
    )
    assert absent.status_code == 409, absent.text
    assert absent.json()["version"] is None

    await admin.put("/config/subaccount/acme", json=SUBACCOUNT)
    both = {"If-Match": '"1"', "If-None-Match": "*"}
    exists = await admin.put("/config/subaccount/acme", json=SUBACCOUNT, headers=both)
    assert exists.status_code == 412, exists.text


# -- whole numbers -----------------------------------------------------------------------------


async def test_a_port_sent_as_443_0_is_stored_and_replicated_as_the_integer_443(
    admin: httpx.AsyncClient,
) -> None:
    body = b'{"virtual_host": "erp.virtual", "virtual_port": 443.0, "internal_host": "erp",'
    body += b' "internal_port": 8.443e3, "protocol": "HTTPS"}'

    response = await admin.put(
        "/config/system-mapping/erp", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 201, response.text
    read = await admin.get("/config/system-mapping/erp")
    assert b'"virtual_port":443,' in read.content, read.text
    value = read.json()["value"]
    assert type(value["virtual_port"]) is int and value["virtual_port"] == 443
    assert type(value["internal_port"]) is int and value["internal_port"] == 8443
    event = orjson.loads((await admin.get("/events")).text.splitlines()[-1])
    assert type(event["data"]["virtual_port"]) is int, event


async def test_a_port_that_is_not_a_whole_number_is_refused(admin: httpx.AsyncClient) -> None:
    response = await admin.put(
        "/config/system-mapping/erp", json={**MAPPING, "virtual_port": 443.5}
    )

    assert_invalid(response, "$.virtual_port")


async def test_a_local_kinds_whole_number_is_stored_as_an_integer(admin: httpx.AsyncClient) -> None:
    body = b'{"library_path": "/usr/lib/libsapcrypto.so", "my_name": "p:CN=x",'
    body += b' "quality_of_protection": 8.0}'
    headers = {"Content-Type": "application/json"}

    response = await admin.put("/config/snc/snc", content=body, headers=headers)

    assert response.status_code == 201, response.text
    read = await admin.get("/config/snc/snc")
    assert b'"quality_of_protection":8}' in read.content, read.text


# -- the rest of the API's refusals, and its document ---------------------------------------------


async def test_a_method_a_path_does_not_have_is_refused_naming_every_method_it_has(
    admin: httpx.AsyncClient,
) -> None:
    response = await admin.post("/config/subaccount/acme", json=SUBACCOUNT)

    assert response.status_code == 405, response.text
    assert response.json() == {"error": "Method Not Allowed"}
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "PUT", "DELETE"} <= allowed, allowed


async def test_an_unknown_path_is_a_404_in_the_apis_error_shape(admin: httpx.AsyncClient) -> None:
    response = await admin.get("/no/such/path")

    assert response.status_code == 404, response.text
    assert response.json() == {"error": "Not Found"}


async def test_the_state_is_asked_at_a_position_or_as_of_a_time_not_both(
    admin: httpx.AsyncClient,
) -> None:
    response = await admin.get("/config", params={"at": 0, "as_of": "2026-01-01T00:00:00Z"})

    assert_invalid(response, "as_of")


async def test_ha_enable_refuses_an_auto_confirm_that_is_not_a_boolean(
    admin: httpx.AsyncClient,
) -> None:
    response = await admin.post("/ha/enable", json={"auto_confirm": {}})

    assert_invalid(response, "$.auto_confirm")
    assert (await admin.get("/ha")).json()["role"] == "standalone"


async def test_the_openapi_document_gives_each_kind_its_put_body_and_the_real_error_shapes(
    admin: httpx.AsyncClient,
) -> None:
    doc = (await admin.get("/openapi.json")).json()

    put = doc["paths"]["/config/system-mapping/{name}"]["put"]
    body = put["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/config.system-mapping"}
    mapping = doc["components"]["schemas"]["config.system-mapping"]
    assert mapping["properties"]["virtual_port"]["type"] == "integer"
    assert set(put["responses"]) >= {"200", "201", "401", "403", "409", "412", "422", "503"}
    invalid = put["responses"]["422"]["content"]["application/json"]["schema"]
    assert invalid == {"$ref": "#/components/schemas/InvalidBody"}
    assert set(doc["components"]["schemas"]["InvalidBody"]["properties"]) == {"error", "errors"}
    unavailable = doc["components"]["schemas"]["NotWritableBody"]
    assert set(unavailable["properties"]) == {"error", "master", "outcome"}  # outcome: unknown
    text = orjson.dumps(doc).decode()
    assert "HTTPValidationError" not in text
    # FastAPI's error shape ({"detail"}) is in no answer; a preflight check's `detail` (its
    # reason, DESIGN.md's GET /ha/preflight) is the one field of that name.
    schemas = doc["components"]["schemas"]
    assert {name for name, s in schemas.items() if "detail" in s.get("properties", {})} == {
        "PreflightCheck"
    }
    for operations in doc["paths"].values():
        for operation in operations.values():
            ok = operation["responses"]["200"]["content"]
            if "application/json" in ok:
                assert ok["application/json"]["schema"] != {"type": "string"}, operation
