"""The clients' preflight: GET /ha/preflight with a timeout of its own (the instance may spend
a peer call's 30 s deadline before it answers), on the master when several URLs are given."""

from __future__ import annotations

import httpx

from shadowline.client.http import AsyncClient, Client
from shadowline.client.requests import PREFLIGHT_TIMEOUT

ANSWER = {"ok": True, "checks": []}


def _instances(seen: list[tuple[str, float | None]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(
            (f"{request.url.host}{request.url.path}", request.extensions["timeout"]["read"])
        )
        if request.url.path == "/master":
            return httpx.Response(200 if request.url.host == "b" else 503, json={})
        return httpx.Response(200, json=ANSWER)

    return httpx.MockTransport(handle)


def test_the_sync_client_asks_the_master_with_the_preflights_own_timeout() -> None:
    seen: list[tuple[str, float | None]] = []
    with Client("http://a,http://b", "admin", "pw", prefer="master") as client:
        client._http = httpx.Client(transport=_instances(seen))
        assert client.ha_preflight() == ANSWER
    assert seen[-1] == ("b/ha/preflight", PREFLIGHT_TIMEOUT)
    assert ("a/master", 2.0) in seen  # the look for the master keeps its own short timeout


async def test_the_async_client_sends_the_same_request() -> None:
    seen: list[tuple[str, float | None]] = []
    async with AsyncClient("http://a", "admin", "pw") as client:
        client._http = httpx.AsyncClient(transport=_instances(seen))
        assert await client.ha_preflight() == ANSWER
    assert seen == [("a/ha/preflight", PREFLIGHT_TIMEOUT)]
