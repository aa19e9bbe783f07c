"""HTTP Basic authentication and the roles admin, auditor and viewer on an instance's API."""

from __future__ import annotations

import base64

import httpx
import orjson

from shadowline.bootstrap import Instance
from tests.conftest import PASSWORDS, http_client

ACME = {"region": "eu10", "subaccount_id": "a1"}


def client_with(inst: Instance, **kwargs: object) -> httpx.AsyncClient:
    """A client with any credentials (or raw headers); unhandled errors come back as a 500."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=inst.asgi, raise_app_exceptions=False),
        base_url="http://instance",
        **kwargs,  # type: ignore[arg-type]
    )


def basic(raw: bytes) -> bytes:
    return b"Basic " + base64.b64encode(raw)


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].lower().startswith("basic")
    assert response.json()["error"]


async def test_a_request_without_credentials_is_401_with_a_basic_challenge(
    instance: Instance,
) -> None:
    async with http_client(instance, None) as anonymous:
        for method, path in [
            ("GET", "/config"),
            ("GET", "/config/subaccount/acme"),
            ("PUT", "/config/subaccount/acme"),
            ("DELETE", "/config/subaccount/acme"),
            ("GET", "/events"),
            ("GET", "/audit/verify"),
            ("GET", "/ha"),
            ("GET", "/metrics"),
            ("GET", "/"),
        ]:
            body = orjson.dumps(ACME) if method == "PUT" else None
            response = await anonymous.request(method, path, content=body)

            assert_unauthorized(response)
        assert (await anonymous.get("/health")).json()["position"] == 0


async def test_a_wrong_password_or_an_unknown_user_is_401(instance: Instance) -> None:
    for user, password in [
        ("admin", "not-the-password"),
        ("admin", ""),
        ("admin", PASSWORDS["admin"].upper()),
        ("ada", PASSWORDS["admin"]),
        ("nobody", PASSWORDS["admin"]),
        ("", PASSWORDS["admin"]),
    ]:
        async with client_with(instance, auth=(user, password)) as client:
            response = await client.put("/config/subaccount/acme", json=ACME)

        assert_unauthorized(response)
    assert instance.writer.position == 0


async def test_a_malformed_authorization_header_is_401(instance: Instance) -> None:
    for header in [
        b"Bearer abc.def.ghi",
        b"Basic",
        b"Basic ",
        b"Basic !!!not-base64!!!",
        b"Basic YWRtaW4",  # base64 without its padding
        basic(b"admin"),  # no colon between user and password
        basic(b"\xff\xfe:\xff"),  # not UTF-8
        b"Basic \xe9\xe9\xe9\xe9",  # not even ASCII
        b"Digest username=admin",
    ]:
        async with client_with(instance, headers={"Authorization": header}) as client:
            response = await client.get("/config")

        assert response.status_code == 401, (header, response.status_code, response.text)
        assert response.headers["www-authenticate"].lower().startswith("basic")


async def test_a_viewer_may_see_status_but_neither_config_nor_writes(instance: Instance) -> None:
    async with http_client(instance, "admin") as admin:
        await admin.put("/config/subaccount/acme", json=ACME)

    async with http_client(instance, "vic") as viewer:
        ha = await viewer.get("/ha")
        screen = await viewer.get("/")
        metrics = await viewer.get("/metrics")
        forbidden = [
            await viewer.put("/config/subaccount/acme", json={**ACME, "region": "us10"}),
            await viewer.delete("/config/subaccount/acme"),
            await viewer.get("/config"),
            await viewer.get("/config/subaccount/acme"),
            await viewer.get("/events"),
            await viewer.get("/audit/verify"),
        ]

    assert ha.status_code == 200, ha.text
    assert ha.json()["role"] == "standalone"
    assert screen.status_code == 200 and metrics.status_code == 200
    for response in forbidden:
        assert response.status_code == 403, (response.request.url, response.text)
        assert "error" in response.json()
        assert "www-authenticate" not in response.headers
    assert "viewer" in forbidden[0].json()["error"]
    async with http_client(instance, "admin") as admin:
        got = await admin.get("/config/subaccount/acme")
        assert got.json() == {"value": ACME, "version": 1}


async def test_an_auditor_may_read_config_and_events_but_not_write(instance: Instance) -> None:
    async with http_client(instance, "admin") as admin:
        await admin.put("/config/subaccount/acme", json=ACME)

    async with http_client(instance, "ada") as auditor:
        config = await auditor.get("/config")
        item = await auditor.get("/config/subaccount/acme")
        history = await auditor.get("/events")
        verify = await auditor.get("/audit/verify")
        put = await auditor.put("/config/subaccount/acme", json={**ACME, "region": "us10"})
        delete = await auditor.delete("/config/subaccount/acme")
        local = await auditor.put("/config/log-level/shadowline", json={"level": "DEBUG"})

    assert config.status_code == 200, config.text
    assert config.json()["items"] == {"subaccount/acme": ACME}
    assert item.json() == {"value": ACME, "version": 1}
    assert history.status_code == 200, history.text
    assert [orjson.loads(line)["position"] for line in history.text.splitlines()] == [1]
    assert verify.json()["ok"] is True
    for refused in (put, delete, local):
        assert refused.status_code == 403, refused.text
        assert "auditor" in refused.json()["error"]
    assert instance.writer.position == 1


async def test_a_removed_user_is_refused_after_refresh_even_with_a_cached_password(
    instance: Instance,
) -> None:
    async with http_client(instance, "ada") as auditor:
        assert (await auditor.get("/config")).status_code == 200  # the password is now cached

        await instance.users.remove("ada")
        await instance.auth.refresh()
        response = await auditor.get("/config")

    assert_unauthorized(response)


async def test_a_changed_password_makes_the_old_one_fail_after_refresh(instance: Instance) -> None:
    async with http_client(instance, "ada") as old:
        assert (await old.get("/config")).status_code == 200  # the old password is now cached

        await instance.users.set_password("ada", "auditor-secret-2")
        await instance.auth.refresh()
        refused = await old.get("/config")
    async with client_with(instance, auth=("ada", "auditor-secret-2")) as new:
        accepted = await new.get("/config")

    assert_unauthorized(refused)
    assert accepted.status_code == 200, accepted.text


async def test_an_event_names_the_authenticated_user_as_its_actor(instance: Instance) -> None:
    await instance.users.add("root2", "admin", "second-admin-secret")
    await instance.auth.refresh()
    async with http_client(instance, "admin") as admin:
        await admin.put("/config/subaccount/acme", json=ACME)
    async with client_with(instance, auth=("root2", "second-admin-secret")) as other:
        response = await other.put(
            "/config/subaccount/beta", json=ACME, headers={"X-Actor": "admin"}
        )
        assert response.status_code == 201, response.text

    async with http_client(instance, "ada") as auditor:
        lines = (await auditor.get("/events")).text.splitlines()
        by_root2 = (await auditor.get("/events", params={"actor": "root2"})).text.splitlines()

    actors = [(e["name"], e["metadata"]["actor"]) for e in map(orjson.loads, lines)]
    assert actors == [("acme", "admin"), ("beta", "root2")]
    assert [orjson.loads(line)["name"] for line in by_root2] == ["beta"]
