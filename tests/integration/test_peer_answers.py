"""Peer answers end to end through a real instance's ASGI stack: authenticated, bound to the
one request and the instance that answered, framed exactly, and never waited for forever."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from shadowline.adapters.peer import PeerClient
from shadowline.domain.errors import Unauthenticated, Unavailable
from tests.conftest import started

SECRET = "test-cluster-secret"  # tests.conftest.make_settings


def _client(app: ASGIApp, cluster: str, **options: Any) -> PeerClient:
    client = PeerClient("http://peer", SECRET, "caller", cluster=cluster, **options)
    client._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://peer")
    return client


async def test_a_history_page_holding_unicode_line_separators_is_authenticated_as_sent(
    db_url: str,
) -> None:
    async with started(db_url) as master:
        value = {"region": "eu\u2028x\u2029y\x85z", "subaccount_id": "a1"}
        await master.service.put("subaccount", "s1", value, None, {"actor": "t"})
        client = _client(master.asgi, master.settings.cluster, peer=master.settings.instance)
        lines = await client.lines("/ha/peer/events", {"after": 0, "limit": 10})
        assert len(lines) == 1 and "\u2028".encode() in lines[0]
        await client.close()


async def test_an_answer_of_another_cluster_or_instance_is_refused(db_url: str) -> None:
    async with started(db_url) as master:
        refused: list[str] = []
        for options in (
            {"cluster": "another-cluster-same-secret"},
            {"cluster": master.settings.cluster, "peer": "not-the-one-asked"},
        ):
            client = _client(master.asgi, on_rejected=refused.append, **options)
            with pytest.raises(Unauthenticated):
                await client.call("GET", "/ha/peer/chain")
            await client.close()
        assert len(refused) == 2


async def test_a_peer_that_never_finishes_its_answer_costs_at_most_the_deadline() -> None:
    async def trickle(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:  # one byte at a time, for ever: no read timeout ever fires
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            await asyncio.sleep(0.05)

    for call in ("call", "lines"):
        client = _client(trickle, "prod", deadline=0.3)
        with pytest.raises(Unavailable):
            if call == "call":
                await client.call("GET", "/health")
            else:
                await client.lines("/ha/peer/events")
        await client.close()
