"""The High Availability screen (`GET /`, `/login`, `/ui/...`) of a real instance: sessions,
roles, CSRF and origin checks, the audit pages, and what it hears on monitoring."""

from __future__ import annotations

import asyncio
import base64
import html
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import aio_pika
import httpx
import orjson
import pytest
from aio_pika.abc import HeadersType

from shadowline.adapters.broker import Names, declare_exchanges
from shadowline.bootstrap import Instance
from shadowline.domain import trust
from shadowline.entrypoints.amqp.feed import MonitoringFeed
from tests.conftest import AMQP_URL, PASSWORDS, delete_cluster_topology, http_client, started
from tests.e2e.tcpproxy import TcpProxy

ORIGIN = "http://instance"
HTML = {"Accept": "text/html,application/xhtml+xml"}
EVIL = "<script>alert('x')</script>"
ACME = {"region": "eu10", "subaccount_id": "a1", "display_name": EVIL}
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def browser(inst: Instance) -> httpx.AsyncClient:
    """A client that, like a browser, keeps cookies, asks for HTML and follows no redirect."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=inst.asgi),
        base_url=ORIGIN,
        headers=HTML,
        follow_redirects=False,
    )


async def log_in(client: httpx.AsyncClient, user: str) -> str:
    """Log in through the form; returns the CSRF token the screen's forms carry."""
    response = await client.post(
        "/login", data={"user": user, "password": PASSWORDS[user]}, headers={"Origin": ORIGIN}
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"
    return csrf_of(await client.get("/"))


def csrf_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    found = CSRF.search(response.text)
    assert found, "the page carries no form token"
    return found.group(1)


@pytest.fixture
async def as_admin(instance: Instance) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with browser(instance) as client:
        yield client, await log_in(client, "admin")


# -- logging in ----------------------------------------------------------------------------------


async def test_a_browser_without_a_session_is_sent_to_the_login_form(instance: Instance) -> None:
    async with browser(instance) as client:
        screen = await client.get("/")
        status = await client.get("/ui/status")
        form = await client.get("/login")
    assert screen.status_code == 303 and screen.headers["location"] == "/login"
    assert status.status_code == 303 and status.headers["location"] == "/login"
    assert form.status_code == 200 and 'name="password"' in form.text
    async with http_client(instance, None) as script:  # curl without -u: told to use Basic
        plain = await script.get("/")
    assert plain.status_code == 401
    assert plain.headers["www-authenticate"].lower().startswith("basic")


async def test_logging_in_sets_a_signed_http_only_strict_session_cookie(instance: Instance) -> None:
    async with browser(instance) as client:
        response = await client.post(
            "/login", data={"user": "vic", "password": PASSWORDS["vic"]}, headers={"Origin": ORIGIN}
        )
        screen = await client.get("/")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"shadowline.session.{instance.settings.instance}=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "max-age", "path"} <= attributes
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert screen.status_code == 200, screen.text
    assert 'id="role" data-role="standalone"' in screen.text
    assert "vic (viewer)" in screen.text
    assert "default-src 'none'" in screen.headers["content-security-policy"]


async def test_behind_a_tls_proxy_the_session_cookie_is_secure(db_url: str) -> None:
    # The proxy speaks http to the instance; people use the advertised https URL.
    async with started(db_url, advertise_url="https://ha.example.com") as inst:
        await inst.users.add("vic", "viewer", PASSWORDS["vic"])
        await inst.auth.refresh()
        async with browser(inst) as client:
            response = await client.post(
                "/login",
                data={"user": "vic", "password": PASSWORDS["vic"]},
                headers={"Origin": "https://ha.example.com"},
            )
    assert response.status_code == 303, response.text
    assert "secure" in {p.strip().lower() for p in response.headers["set-cookie"].split(";")}


async def test_a_wrong_password_or_a_forged_cookie_gives_no_session(instance: Instance) -> None:
    name = f"shadowline.session.{instance.settings.instance}"
    async with browser(instance) as client:
        wrong = await client.post("/login", data={"user": "admin", "password": "nope"})
        assert wrong.status_code == 401 and "wrong password" in wrong.text
        assert "set-cookie" not in wrong.headers
        await log_in(client, "vic")
        genuine = client.cookies[name]
    payload, mac = genuine.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    as_admin = base64.urlsafe_b64encode(orjson.dumps({**claims, "u": "admin"})).decode()
    for forged in (f"{as_admin.rstrip('=')}.{mac}", f"{payload}.{mac[:-2]}AA", payload, ""):
        async with browser(instance) as other:
            response = await other.get("/", headers={"Cookie": f"{name}={forged}"})
        assert response.status_code == 303, (forged, response.text)
        assert response.headers["location"] == "/login"
    async with browser(instance) as other:
        assert (await other.get("/", headers={"Cookie": f"{name}={genuine}"})).status_code == 200


@pytest.mark.parametrize("change", ["removed", "new password"])
async def test_a_removed_user_or_a_changed_password_ends_the_session_at_the_users_refresh(
    instance: Instance, change: str
) -> None:
    async with browser(instance) as client:
        await log_in(client, "vic")
        if change == "removed":
            await instance.users.remove("vic")
        else:
            await instance.users.set_password("vic", "another-secret-1")
        deadline = time.monotonic() + 15  # the users are re-read every second
        while (response := await client.get("/")).status_code == 200:
            assert time.monotonic() < deadline, f"the session outlived the user's change ({change})"
            await asyncio.sleep(0.1)
    assert response.status_code == 303 and response.headers["location"] == "/login"


async def test_logging_out_ends_the_session_even_for_a_copy_of_its_cookie(
    as_admin: tuple[httpx.AsyncClient, str], instance: Instance
) -> None:
    client, token = as_admin
    name = f"shadowline.session.{instance.settings.instance}"
    copy = client.cookies[name]
    response = await client.post("/logout", data={"csrf": token}, headers={"Origin": ORIGIN})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert (await client.get("/")).status_code == 303
    async with browser(instance) as other:
        replayed = await other.get("/", headers={"Cookie": f"{name}={copy}"})
    assert replayed.status_code == 303 and replayed.headers["location"] == "/login"


# -- roles, CSRF, origins ------------------------------------------------------------------------


async def test_a_viewer_sees_the_status_but_an_action_or_the_history_is_403(
    instance: Instance,
) -> None:
    async with browser(instance) as client:
        token = await log_in(client, "vic")
        screen = await client.get("/")
        action = await client.post("/ui/switch-roles", data={"csrf": token})
        history = await client.get("/ui/history")
    assert screen.status_code == 200 and 'id="switch-roles"' not in screen.text
    assert action.status_code == 403 and "needs 'admin'" in html.unescape(action.text)
    assert history.status_code == 403 and "needs 'auditor'" in html.unescape(history.text)


async def test_an_admin_action_without_or_with_a_wrong_csrf_token_is_403(
    as_admin: tuple[httpx.AsyncClient, str], instance: Instance
) -> None:
    client, token = as_admin
    missing = await client.post("/ui/remove-shadow", data={}, headers={"Origin": ORIGIN})
    wrong = await client.post("/ui/remove-shadow", data={"csrf": token[::-1]})
    as_json = await client.post("/ui/remove-shadow", json={"csrf": token})
    for response in (missing, wrong, as_json):
        assert response.status_code == 403, response.text
        assert "CSRF token" in response.text
    async with http_client(instance, "admin") as basic:  # HTTP Basic needs the token too
        refused = await basic.post("/ui/confirm", data={})
        page = await basic.get("/")
        accepted = await basic.post("/ui/confirm", data={"csrf": csrf_of(page)})
    assert refused.status_code == 403
    assert accepted.status_code == 303, accepted.text
    assert instance.ha.role.role == "standalone"


async def test_a_refused_action_comes_back_to_the_screen_with_its_reason(
    as_admin: tuple[httpx.AsyncClient, str],
) -> None:
    client, token = as_admin
    response = await client.post(
        "/ui/remove-shadow", data={"csrf": token}, headers={"Origin": ORIGIN}
    )
    assert response.status_code == 303 and response.headers["location"] == "/"
    screen = await client.get("/")
    assert 'class="flash error"' in screen.text
    assert "only a master has a shadow to remove" in screen.text
    assert 'id="flash"' not in (await client.get("/")).text, "a flash message is shown once"


async def test_a_form_posted_from_another_origin_is_refused(
    as_admin: tuple[httpx.AsyncClient, str], instance: Instance
) -> None:
    client, token = as_admin
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/page"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://instance:8081"},  # another port of the same host: another origin
    ):
        response = await client.post("/ui/switch-roles", data={"csrf": token}, headers=headers)
        assert response.status_code == 403, (headers, response.text)
        login = await client.post(
            "/login", data={"user": "admin", "password": PASSWORDS["admin"]}, headers=headers
        )
        assert login.status_code == 403, (headers, login.text)
    assert instance.ha.role.role == "standalone"


# -- the audit pages -----------------------------------------------------------------------------


async def put(instance: Instance, key: str, value: object) -> int:
    async with http_client(instance, "admin") as admin:
        response = await admin.put(f"/config/{key}", json=value)
    assert response.status_code in (200, 201), response.text
    return int(response.json()["position"])


async def test_the_history_page_filters_events_and_escapes_their_values(instance: Instance) -> None:
    await put(instance, "subaccount/acme", ACME)
    await put(instance, "subaccount/other", {"region": "us10", "subaccount_id": "b2"})
    await put(instance, "subaccount/acme", {**ACME, "region": "eu20"})
    async with browser(instance) as client:
        await log_in(client, "ada")
        everything = await client.get("/ui/history")
        by_name = await client.get("/ui/history", params={"kind": "subaccount", "name": "acme"})
        by_actor = await client.get("/ui/history", params={"actor": "nobody"})
        by_type = await client.get("/ui/history", params={"type": "ConfigPut", "limit": "1"})
        second = await client.get("/ui/history", params={"type": "ConfigPut", "after": "1"})
        bad = await client.get("/ui/history", params={"since": "yesterday"})
    assert everything.status_code == 200, everything.text
    assert EVIL not in everything.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in everything.text
    assert rows(everything) == 3
    assert rows(by_name) == 2 and "subaccount/other" not in by_name.text
    assert rows(by_actor) == 0 and "No event matches" in by_actor.text
    assert rows(by_type) == 1 and 'id="next"' in by_type.text
    next_link = re.search(r'id="next" href="([^"]+)"', by_type.text)
    assert next_link is not None and "after=1" in next_link.group(1)
    assert rows(second) == 2
    assert bad.status_code == 422 and "not an ISO-8601 time" in bad.text


def rows(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    table = response.text.split('id="history"')[1].split("</table>")[0]
    return table.count("<tr>") - 1 - table.count("No event matches")


async def test_the_state_and_diff_pages_show_the_configuration_at_points(
    instance: Instance,
) -> None:
    first = await put(instance, "subaccount/acme", ACME)
    await asyncio.sleep(0.05)
    between = datetime.now(UTC).isoformat()
    await asyncio.sleep(0.05)
    second = await put(instance, "subaccount/acme", {**ACME, "region": "eu20"})
    third = await put(instance, "subaccount/other", {"region": "us10", "subaccount_id": "b2"})
    async with browser(instance) as client:
        await log_in(client, "ada")
        at_first = await client.get("/ui/state", params={"at": str(first)})
        as_of = await client.get("/ui/state", params={"at": between})
        now = await client.get("/ui/state")
        beyond = await client.get("/ui/state", params={"at": "999"})
        changes = await client.get("/ui/diff", params={"from": str(first), "to": str(third)})
        since_then = await client.get("/ui/diff", params={"from": between})
    for page in (at_first, as_of, now, changes, since_then):
        assert page.status_code == 200, page.text
        assert EVIL not in page.text
    assert f"Right after position <b>{first}</b>: 1 item(s)" in at_first.text
    assert "&lt;script&gt;" in at_first.text and "eu10" in at_first.text
    assert f"Right after position <b>{first}</b>" in as_of.text
    assert f"Right after position <b>{third}</b>: 2 item(s)" in now.text
    assert beyond.status_code == 404 and "beyond the head" in beyond.text
    assert f"From position <b>{first}</b> to position <b>{third}</b>" in changes.text
    assert "1 added, 0 removed, 1 changed" in changes.text
    assert section(changes, "added").count("subaccount/other") == 1
    assert "eu20" in section(changes, "changed") and "eu10" in section(changes, "changed")
    assert f"to position <b>{third}</b>" in since_then.text
    assert second < third


def section(response: httpx.Response, name: str) -> str:
    return response.text.split(f'id="{name}"')[1].split("</table>")[0]


# -- what the screen hears on monitoring ---------------------------------------------------------


FEED_SECRET = "test-cluster-secret"  # tests.conftest.make_settings gives instances this one


async def publish(cluster: str, routing_key: str, body: bytes, *, signed: bool = True) -> None:
    """Publish on monitoring, with the MAC an instance of the cluster would add (`signed`)."""
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(Names(cluster).monitoring)
        mac = trust.message_mac(FEED_SECRET, cluster, routing_key, body)
        headers: HeadersType = {trust.MAC_HEADER: mac} if signed else {}
        await exchange.publish(aio_pika.Message(body, headers=headers), routing_key)
    finally:
        await connection.close()


async def wait_for(client: httpx.AsyncClient, text: str, within: float = 30) -> str:
    deadline = time.monotonic() + within
    while True:
        fragment = (await client.get("/ui/status")).text
        if text in fragment:
            return fragment
        assert time.monotonic() < deadline, f"{text!r} not on the screen:\n{fragment}"
        await asyncio.sleep(0.2)


async def test_the_screen_shows_heartbeats_and_alerts_heard_on_monitoring(
    instance: Instance, rabbitmq: None
) -> None:
    cluster = instance.settings.cluster
    try:
        async with http_client(instance, "admin") as admin:
            assert (await admin.post("/ha/enable")).status_code == 200
        async with browser(instance) as client:
            await log_in(client, "vic")
            beats = await wait_for(client, "Listening to the cluster")
            beats = await wait_for(client, f"<td>{instance.settings.instance}</td><td>master</td>")
            assert "No heartbeat heard yet" not in beats
            await publish(
                cluster,
                "alert.test",
                orjson.dumps({"message": EVIL, "instance": "x", "at": time.time()}),
            )
            await publish(cluster, "alert.bad", b"{not json")
            seen = await wait_for(client, "malformed ones ignored: 1")
            seen = await wait_for(client, "alert.test")
    finally:
        await delete_cluster_topology(cluster, [])
    assert EVIL not in seen and "&lt;script&gt;" in seen


async def wait_until(condition: Callable[[], bool], what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        await asyncio.sleep(0.05)


async def test_the_monitoring_feed_waits_for_the_exchange_and_survives_a_lost_connection(
    rabbitmq: None,
) -> None:
    """The feed's queue hears role changes, failover steps and alerts, never heartbeats (those
    come from the heartbeat listener and the instance's own liveness, through `take` and
    `own`): forged, replayed and stale messages are counted, not shown."""
    cluster = f"t{uuid.uuid4().hex[:10]}"
    names = Names(cluster)
    proxy = TcpProxy("127.0.0.1", 5672)
    proxy.start()
    feed = MonitoringFeed(proxy.url_for(AMQP_URL), names, "test feed", secret=FEED_SECRET)
    task = asyncio.create_task(feed.run())

    def beat(seq: int) -> bytes:
        return orjson.dumps(
            {"instance": "m1", "role": "master", "epoch": 1, "cluster": cluster, "seq": seq,
             "boot": "0123456789abcdef",
             "sent_at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
        )  # fmt: skip

    def take(routing_key: str, body: bytes) -> None:
        feed.take(routing_key, body, trust.message_mac(FEED_SECRET, cluster, routing_key, body))

    try:
        await asyncio.sleep(1.0)
        assert not feed.connected, "it must not declare the exchange itself"
        connection = await aio_pika.connect(AMQP_URL, timeout=10)
        async with connection:
            channel = await connection.channel()
            await declare_exchanges(channel, names, ("monitoring",))
            await wait_until(lambda: feed.connected, "listening once the exchange exists")
            changed = {"sentence": "m1 is master", "at": time.time()}
            await publish(cluster, "role.changed", orjson.dumps(changed))
            await publish(cluster, "heartbeat.m1", beat(1))  # not bound: not heard here
            await publish(cluster, "config.changed", orjson.dumps({"count": 1, "at": time.time()}))
            # forged: no MAC, or a MAC of another routing key, are never shown
            await publish(cluster, "role.changed", orjson.dumps({"sentence": "evil"}), signed=False)
            stale = {"sentence": "a year ago", "at": time.time() - 3e7}
            await publish(cluster, "role.changed", orjson.dumps(stale))
            await wait_until(lambda: feed.rejected == 2, "forged and stale rejected")
            await wait_until(lambda: feed.received == 1, "one message")

            proxy.cut("reset")
            await wait_until(lambda: not feed.connected, "noticing the lost connection")
            proxy.restore()
            await wait_until(lambda: feed.connected, "listening again")
            step = {"watchdog": "w1", "phase": "probing", "at": time.time()}
            await publish(cluster, "failover.probing", orjson.dumps(step))
            await wait_until(lambda: feed.received == 2, "a failover step after the reconnect")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        proxy.close()
        await delete_cluster_topology(cluster, [])
    take("heartbeat.m1", beat(1))  # a peer's, as the heartbeat listener hands it on
    take("heartbeat.m1", beat(1))  # genuine, replayed
    take("heartbeat.m2", b"{}")  # its MAC holds, but it is no heartbeat: refused
    feed.own({"instance": "me", "role": "shadow", "epoch": 1})
    assert (feed.received, feed.rejected, feed.malformed) == (3, 4, 0)
    assert [h.body["instance"] for h in feed.latest_heartbeats()] == ["m1", "me"]
    assert [e.routing_key for e in feed.recent_events()] == ["failover.probing", "role.changed"]
    assert [w.body["watchdog"] for w in feed.watchdogs_seen()] == ["w1"]
    # A replayed (or copied) watchdog message says nothing newer of it: a dead watchdog must
    # not look alive to the screen and preflight for as long as its messages can be replayed.
    [kept] = feed.watchdogs_seen()
    take("failover.probing", orjson.dumps(step))
    assert feed.watchdogs_seen() == [kept]
    later = {**step, "at": time.time() + 1}
    take("failover.probing", orjson.dumps(later))
    assert [w.body["at"] for w in feed.watchdogs_seen()] == [later["at"]]
