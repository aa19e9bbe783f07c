"""The holes an attacker found in the HTTP side of an instance (issue 9), each closed.

Server limits run a real uvicorn server (built as `shadowline instance` builds it) on a free
loopback port, or a real `shadowline instance` process; the rest go through ASGI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from shadowline.adapters import passwords
from shadowline.bootstrap import Instance
from shadowline.domain.errors import InvalidInput
from shadowline.runtime import http_config, http_server
from tests.conftest import PASSWORDS, started

# -- a real HTTP server ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(inst: Instance) -> AsyncIterator[tuple[str, int]]:
    """The instance's ASGI app served by uvicorn as `serve` configures it, on a free port."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = http_server(http_config(inst.settings, inst.asgi))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), task.result()
            await asyncio.sleep(0.01)
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


@pytest.fixture
async def idle_connections() -> AsyncIterator[Any]:
    """Opens `count` connections that send nothing; all closed after the test."""
    writers: list[asyncio.StreamWriter] = []

    async def open_idle(host: str, port: int, count: int) -> list[asyncio.StreamReader]:
        readers = []
        for _ in range(count):
            reader, writer = await asyncio.open_connection(host, port)
            readers.append(reader)
            writers.append(writer)
        return readers

    yield open_idle
    for writer in writers:
        writer.close()


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the server ended the connection (EOF or reset) within `within` seconds."""
    try:
        while await asyncio.wait_for(reader.read(65536), within):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def health(host: str, port: int) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5) as client:
        return await client.get("/health")


async def test_health_stays_reachable_with_hundreds_of_idle_connections_over_the_cap(
    db_url: str, idle_connections: Any
) -> None:
    settings = {"http_max_connections": 50, "http_header_timeout": 30}
    async with started(db_url, **settings) as inst, serving(inst) as (host, port):
        readers = await idle_connections(host, port, 300)
        await asyncio.sleep(0.3)  # let the server accept them all
        answer = await health(host, port)
        closed = await asyncio.gather(*(closed_by_server(r, 2) for r in readers[:250]))

    assert answer.status_code == 200, answer.text
    assert answer.json()["instance"] == inst.settings.instance
    # The oldest idle connections were closed to make room: at most the cap stay open.
    assert sum(closed) == 250


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    db_url: str, idle_connections: Any
) -> None:
    async with started(db_url, http_header_timeout=0.5) as inst, serving(inst) as (host, port):
        (reader,) = await idle_connections(host, port, 1)
        started_at = time.monotonic()
        assert await closed_by_server(reader, 5)

    assert time.monotonic() - started_at < 3


async def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_timeout(db_url: str) -> None:
    async with started(db_url, http_header_timeout=1) as inst, serving(inst) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started_at, cut = time.monotonic(), False
        while time.monotonic() - started_at < 6 and not cut:
            try:
                writer.write(b"a")
                await writer.drain()
            except ConnectionError:
                cut = True
            cut = cut or await closed_by_server(reader, 0.2)
        elapsed = time.monotonic() - started_at

    assert cut, "a slowloris connection was kept open"
    assert elapsed < 4


async def test_a_1_mib_header_line_is_refused_with_431(db_url: str) -> None:
    async with started(db_url) as inst, serving(inst) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        with contextlib.suppress(ConnectionError):
            while sent < 1024 * 1024:
                writer.write(b"a" * 16384)
                await writer.drain()
                sent += 16384
            writer.write(b"\r\n\r\n")
            await writer.drain()
        try:
            answer = await asyncio.wait_for(reader.read(200), 5)
        except ConnectionError:
            answer = b""
        still_healthy = await health(host, port)

    assert answer.startswith(b"HTTP/1.1 431") or answer == b"", answer
    assert not answer.startswith(b"HTTP/1.1 200")
    assert still_healthy.status_code == 200


async def test_headers_just_under_the_limit_are_served(db_url: str) -> None:
    async with (
        started(db_url, http_max_header_bytes=16384) as inst,
        serving(inst) as (host, port),
        httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5) as client,
    ):
        fits = await client.get("/health", headers={"X-Pad": "a" * 12000})
        too_big = await client.get("/health", headers={"X-Pad": "a" * 17000})

    assert fits.status_code == 200, fits.text
    assert too_big.status_code == 431, too_big.text


# -- a real `shadowline instance` process and its file descriptors ---------------------------


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def low_fd_instance(db_url: str, tmp_path: Path, rabbitmq: None) -> Iterator[Any]:
    """A real instance process whose file-descriptor limit is only 256 (the attacker's 20,000
    connections against a limit of 20,000, scaled down)."""
    from tests.e2e.conftest import make_process

    process = make_process(
        db_url,
        tmp_path / "instance.log",
        name="fd-limit",
        cluster=f"fd{uuid.uuid4().hex[:8]}",
        SHADOWLINE_HTTP_MAX_CONNECTIONS="1000",  # more than the fds allow: the instance lowers it
    )

    def limited() -> None:  # in the child, before exec: soft and hard limit 256
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with process.log.open("ab") as out:
        process.popen = subprocess.Popen(
            [sys.executable, "-m", "shadowline", "instance"],
            env=process.env,
            stdout=out,
            stderr=out,
            preexec_fn=limited,
        )
    process.wait_healthy()
    yield process
    process.stop()


async def test_idle_connections_beyond_the_file_descriptor_limit_do_not_take_health_down(
    low_fd_instance: Any, idle_connections: Any
) -> None:
    pid = low_fd_instance.popen.pid
    port = int(low_fd_instance.url.rsplit(":", 1)[1])
    readers = await idle_connections("127.0.0.1", port, 400)
    await asyncio.sleep(1)
    fds = open_fds(pid)
    answer = await health("127.0.0.1", port)
    closed = await asyncio.gather(*(closed_by_server(r, 3) for r in readers[:100]))

    assert answer.status_code == 200, low_fd_instance.log.read_text()[-2000:]
    assert fds < 256, fds
    assert all(closed), "the oldest idle connections were not closed to make room"
    assert "connections at most" in low_fd_instance.log.read_text()


# -- through ASGI ----------------------------------------------------------------------------


ACME = {"region": "eu10", "subaccount_id": "a1"}
ORIGIN = "http://instance"


def lenient(
    inst: Instance,
    user: str | None = "admin",
    client: tuple[str, int] = ("127.0.0.1", 123),
    base_url: str = "http://instance",
) -> httpx.AsyncClient:
    """An API client whose unhandled errors come back as a 500, so a test can say which status
    it expected instead."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=inst.asgi, raise_app_exceptions=False, client=client),
        base_url=base_url,
        auth=(user, PASSWORDS[user]) if user else None,
    )


def assert_field_error(response: httpx.Response, status: int, path: str) -> None:
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert [e["path"] for e in errors] == [path], errors
    assert errors[0]["message"]


# -- X-Request-Id and X-Reason -------------------------------------------------------------------


async def test_an_overlong_request_id_or_reason_is_422_and_nothing_is_written(
    instance: Instance,
) -> None:
    async with lenient(instance) as admin:
        long_id = await admin.put(
            "/config/subaccount/acme", json=ACME, headers={"X-Request-Id": "r" * 201}
        )
        long_reason = await admin.put(
            "/config/subaccount/acme", json=ACME, headers={"X-Reason": "why " * 126}
        )
        control = await admin.put(
            "/config/subaccount/acme", json=ACME, headers={"X-Request-Id": "a\tb"}
        )
        delete = await admin.delete("/config/subaccount/acme", headers={"X-Request-Id": "r" * 201})

    assert_field_error(long_id, 422, "X-Request-Id")
    assert_field_error(long_reason, 422, "X-Reason")
    assert_field_error(control, 422, "X-Request-Id")
    assert delete.status_code == 422, delete.text
    assert instance.writer.position == 0


async def test_a_request_id_and_reason_at_their_bounds_are_recorded_whole(
    instance: Instance,
) -> None:
    request_id, reason = "r" * 200, "w" * 500
    async with lenient(instance) as admin:
        written = await admin.put(
            "/config/subaccount/acme",
            json=ACME,
            headers={"X-Request-Id": request_id, "X-Reason": reason},
        )
        events = await admin.get("/events")

    assert written.status_code == 201, written.text
    metadata = orjson.loads(events.text.splitlines()[0])["metadata"]
    assert metadata["request_id"] == request_id and metadata["reason"] == reason


# -- CSRF on the JSON API --------------------------------------------------------------------


async def test_a_text_plain_form_from_another_origin_cannot_enable_ha(instance: Instance) -> None:
    refused = []
    async with lenient(instance) as browser:  # the operator's remembered Basic credentials
        for path in ("/ha/enable", "/ha/confirm", "/ha/switch-roles"):
            for headers in (
                {"Origin": "http://evil.example", "Content-Type": "text/plain"},
                {"Origin": "null", "Content-Type": "text/plain"},
                {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
                {"Sec-Fetch-Site": "same-site"},
                {"Origin": "http://instance:8081"},  # another port: another origin
            ):
                refused.append(await browser.post(path, content=b'{"a":1}', headers=headers))

    for response in refused:
        assert response.status_code == 403, (response.request.headers, response.text)
        assert "cross-site" in response.json()["error"]
    assert instance.ha.role.role == "standalone"


async def test_maintenance_cannot_be_switched_on_from_another_origin(instance: Instance) -> None:
    async with lenient(instance) as admin:
        assert (await admin.post("/ha/enable", json={})).status_code == 200
        forged = await admin.post(
            "/ha/maintenance",
            content=b'{"on": true}',
            headers={"Origin": "http://evil.example", "Content-Type": "text/plain"},
        )
        status = (await admin.get("/ha")).json()

    assert forged.status_code == 403, forged.text
    assert status["maintenance"] is False


async def test_a_state_changing_call_with_a_body_that_is_not_json_is_415(
    instance: Instance,
) -> None:
    async with lenient(instance) as admin:
        answers = [
            await admin.post(
                "/ha/maintenance", content=b'{"on": true}', headers={"Content-Type": "text/plain"}
            ),
            await admin.put(
                "/config/subaccount/acme",
                content=orjson.dumps(ACME),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ),
            await admin.post("/ha/enable", data={"auto_confirm": "true"}),
            await admin.request(
                "DELETE", "/ha/shadow", content=b"x", headers={"Content-Type": "text/plain"}
            ),
        ]

    for response in answers:
        assert response.status_code == 415, response.text
        assert "application/json" in response.json()["error"]
    assert instance.ha.role.role == "standalone" and instance.writer.position == 0


async def test_scripts_and_same_origin_pages_still_change_state(db_url: str) -> None:
    public = "https://config.example.com"
    async with started(db_url, advertise_url=public) as inst, lenient(inst) as admin:
        plain = await admin.put("/config/subaccount/acme", json=ACME)
        charset = await admin.put(
            "/config/subaccount/beta",
            content=orjson.dumps(ACME),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        same_origin = await admin.put(
            "/config/subaccount/gamma",
            json=ACME,
            headers={"Origin": "http://instance", "Sec-Fetch-Site": "same-origin"},
        )
        behind_tls_proxy = await admin.put(
            "/config/subaccount/delta", json=ACME, headers={"Origin": public}
        )
        bodiless = await admin.post("/ha/enable")

    for response in (plain, charset, same_origin, behind_tls_proxy, bodiless):
        assert response.status_code in (200, 201), (response.request.url, response.text)
    assert inst.ha.role.role == "master"


# -- no 5xx for odd input ------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    """A subaccount whose display_name is a string in `depth` arrays (json.dumps and orjson
    refuse to write such a thing, so it is written by hand)."""
    return b'{"region": "eu10", "subaccount_id": "a1", "display_name": %s"x"%s}' % (
        b"[" * depth,
        b"]" * depth,
    )


async def test_a_value_nested_1000_deep_is_422_and_deeper_than_json_allows_is_400(
    instance: Instance,
) -> None:
    json_body = {"Content-Type": "application/json"}
    async with lenient(instance) as admin:
        at_1000 = await admin.put(
            "/config/subaccount/acme", content=nested(1000), headers=json_body
        )
        bare = await admin.put(
            "/config/subaccount/acme", content=b"[" * 1000 + b"]" * 1000, headers=json_body
        )
        too_deep = await admin.put(
            "/config/subaccount/acme", content=b"[" * 5000 + b"]" * 5000, headers=json_body
        )

    assert_field_error(at_1000, 422, "$.display_name")
    assert_field_error(bare, 422, "$[0]")
    assert too_deep.status_code == 400, too_deep.text
    assert instance.writer.position == 0


async def test_an_if_match_of_5000_digits_is_422(instance: Instance) -> None:
    async with lenient(instance) as admin:
        await admin.put("/config/subaccount/acme", json=ACME)
        put = await admin.put(
            "/config/subaccount/acme", json=ACME, headers={"If-Match": f'"{"9" * 5000}"'}
        )
        delete = await admin.delete("/config/subaccount/acme", headers={"If-Match": "1" * 5000})

    assert_field_error(put, 422, "If-Match")
    assert_field_error(delete, 422, "If-Match")
    assert instance.writer.position == 1


HUGE = "9" * 5000


async def test_points_in_history_of_5000_digits_are_422_on_the_api(instance: Instance) -> None:
    async with lenient(instance) as admin:
        await admin.put("/config/subaccount/acme", json=ACME)
        answers = {
            "from": await admin.get("/config/diff", params={"from": HUGE}),
            "to": await admin.get("/config/diff", params={"from": "0", "to": HUGE}),
            "at": await admin.get("/config", params={"at": HUGE}),
            "after": await admin.get("/events", params={"after": HUGE}),
            "limit": await admin.get("/events", params={"limit": HUGE}),
        }
        past_bigint = await admin.get("/config/diff", params={"from": str(2**63)})
        config_past_bigint = await admin.get("/config", params={"at": str(2**63)})

    for field, response in answers.items():
        assert response.status_code == 422, (field, response.text)
        assert any(field in e["path"] for e in response.json()["errors"]), response.text
    assert past_bigint.status_code in (404, 422), past_bigint.text
    assert config_past_bigint.status_code in (404, 422), config_past_bigint.text


async def test_points_in_history_of_5000_digits_are_422_on_the_screen(instance: Instance) -> None:
    async with lenient(instance) as auditor:
        await auditor.put("/config/subaccount/acme", json=ACME)
        pages = [
            await auditor.get("/ui/state", params={"at": HUGE}),
            await auditor.get("/ui/diff", params={"from": HUGE}),
            await auditor.get("/ui/diff", params={"from": "0", "to": HUGE}),
            await auditor.get("/ui/history", params={"after": HUGE}),
            await auditor.get("/ui/history", params={"limit": HUGE}),
            await auditor.get("/ui/state", params={"at": str(2**63)}),
        ]

    for response in pages:
        assert response.status_code in (404, 422), (response.request.url, response.text[:300])
        assert "text/html" in response.headers["content-type"]


async def test_odd_query_values_are_4xx_never_5xx(instance: Instance) -> None:
    odd = ["nan", "inf", "-1", "1e999", "\u0661", "9" * 5000, "2024-13-45", "0" * 5000, "+1"]
    async with lenient(instance) as admin:
        await admin.put("/config/subaccount/acme", json=ACME)
        answers = []
        for value in odd:
            for path, field in [
                ("/events", "after"),
                ("/events", "limit"),
                ("/events", "wait"),
                ("/events", "since"),
                ("/config", "at"),
                ("/config", "as_of"),
                ("/config/diff", "from"),
                ("/ui/history", "after"),
                ("/ui/history", "since"),
                ("/ui/state", "at"),
                ("/ui/diff", "to"),
            ]:
                params = {field: value} if path != "/ui/diff" else {"from": "1", field: value}
                answers.append(await admin.get(path, params=params))

    failed = [(r.request.url, r.status_code) for r in answers if r.status_code >= 500]
    assert not failed, failed[:5]


# -- users: names and passwords that HTTP Basic can carry --------------------------------------


def shadowline_cli(db_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLINE_")} | {
        "SHADOWLINE_DATABASE_URL": db_url,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "shadowline", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("name", "password", "said"),
    [
        ("", "a-password", "empty"),
        ("   ", "a-password", "empty"),
        ("ali:ce", "a-password", "':'"),
        ("alice", "", "password"),
        ("bob\x01", "a-password", "control"),
        ("x" * 65, "a-password", "64"),
    ],
)
def test_users_add_refuses_names_and_passwords_basic_cannot_carry(
    db_url: str, name: str, password: str, said: str
) -> None:
    refused = shadowline_cli(db_url, "users", "add", name, "--password", password)
    listed = shadowline_cli(db_url, "users", "list", "--json")

    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert said in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert orjson.loads(listed.stdout) == []


def test_users_passwd_refuses_an_empty_password(db_url: str) -> None:
    assert shadowline_cli(db_url, "users", "add", "alice", "--password", "ok-1").returncode == 0
    refused = shadowline_cli(db_url, "users", "passwd", "alice", "--password", "")

    assert refused.returncode == 2, refused.stderr
    assert "password" in refused.stderr


async def test_the_users_adapter_refuses_them_for_every_door(instance: Instance) -> None:
    for name, password in [("", "pw"), ("a:b", "pw"), ("carol", "")]:
        with pytest.raises(InvalidInput):
            await instance.users.add(name, "viewer", password)
    with pytest.raises(InvalidInput):
        await instance.users.set_password("ada", "")
    assert [u.name for u in await instance.users.all()] == ["ada", "admin", "vic"]


async def test_an_empty_admin_password_creates_no_admin(db_url: str) -> None:
    async with started(db_url, admin_password=None) as inst:
        with pytest.raises(InvalidInput):
            await inst.users.bootstrap_admin("")
        assert await inst.users.count() == 0
    refused = shadowline_cli(db_url, "instance", "--no-migrate", SHADOWLINE_ADMIN_PASSWORD="")

    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "SHADOWLINE_ADMIN_PASSWORD" in refused.stderr


# -- logins: the same cost for unknown users, and a limit per source address -----------------------


@pytest.fixture
def argon2_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The stored hash of every Argon2 check made (the real check still runs)."""
    calls: list[str] = []
    real = passwords.verify_password

    def counted(stored_hash: str, password: str) -> bool:
        calls.append(stored_hash)
        return real(stored_hash, password)

    monkeypatch.setattr(passwords, "verify_password", counted)
    return calls


def argon2_parameters(stored_hash: str) -> str:
    return stored_hash.rsplit("$", 2)[0]  # "$argon2id$v=19$m=65536,t=3,p=4"


async def test_an_unknown_user_costs_an_argon2_check_like_a_wrong_password(
    instance: Instance, argon2_checks: list[str]
) -> None:
    async with lenient(instance, None) as anonymous:
        unknown = await anonymous.get("/config", auth=("nobody", "guess-1"))
        wrong = await anonymous.get("/config", auth=("admin", "guess-2"))
        screen = await anonymous.post(
            "/login", data={"user": "nobody", "password": "guess-3"}, headers={"Origin": ORIGIN}
        )

    assert unknown.status_code == wrong.status_code == screen.status_code == 401
    admin_user = instance.auth.user("admin")
    assert admin_user is not None
    admin_hash = admin_user.password_hash
    assert len(argon2_checks) == 3, argon2_checks
    dummy, real, dummy_again = argon2_checks
    assert real == admin_hash
    assert dummy == dummy_again != admin_hash
    assert argon2_parameters(dummy) == argon2_parameters(admin_hash)


async def test_failed_logins_past_the_limit_are_429_without_argon2(
    db_url: str, argon2_checks: list[str]
) -> None:
    async with (
        started(db_url, login_max_failures=3, login_failure_window=60) as inst,
        lenient(inst, None, client=("10.1.1.1", 4711)) as attacker,
        lenient(inst, "admin", client=("10.1.1.2", 4711)) as elsewhere,
    ):
        failures = [
            await attacker.get("/config", auth=("admin", "guess-1")),
            await attacker.get("/config", auth=("nobody", "guess-2")),
            await attacker.post("/login", data={"user": "admin", "password": "guess-3"}),
        ]
        checks_before = len(argon2_checks)
        throttled = await attacker.get("/config", auth=("admin", "guess-4"))
        right_password = await attacker.get("/config", auth=("admin", PASSWORDS["admin"]))
        form = await attacker.post("/login", data={"user": "admin", "password": PASSWORDS["admin"]})
        checks_throttled = len(argon2_checks) - checks_before
        other_address = await elsewhere.get("/config")

    assert [r.status_code for r in failures] == [401, 401, 401]
    assert throttled.status_code == 429, throttled.text
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    assert "too many failed logins" in throttled.json()["error"]
    assert right_password.status_code == 429  # no more guesses, not even a right one
    assert form.status_code == 429 and "text/html" in form.headers["content-type"]
    assert int(form.headers["retry-after"]) <= 60
    assert checks_throttled == 0, "a throttled login ran Argon2"
    assert other_address.status_code == 200, other_address.text


async def test_a_successful_login_resets_the_count_and_cached_credentials_still_pass(
    db_url: str,
) -> None:
    async with (
        started(db_url, login_max_failures=3, login_failure_window=60) as inst,
        lenient(inst, None, client=("10.2.2.2", 4711)) as client,
    ):
        wrong, right = ("admin", "guess"), ("admin", PASSWORDS["admin"])
        before = [(await client.get("/config", auth=wrong)).status_code for _ in range(2)]
        reset = await client.get("/config", auth=right)  # Argon2 ran: the count starts again
        after = [(await client.get("/config", auth=wrong)).status_code for _ in range(4)]
        cached = await client.get("/config", auth=right)  # checked a moment ago: no guess

    assert before == [401, 401]
    assert reset.status_code == 200
    assert after == [401, 401, 401, 429]
    assert cached.status_code == 200, cached.text
