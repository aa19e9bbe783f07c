"""A real pair's HA answers, each held to the OpenAPI document (GET /openapi.json): the
answers schemathesis, on one standalone instance, only ever sees refused. The signed calls
between the instances are made as the peer makes them (adapters.peer.PeerClient)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from shadowline import __version__
from shadowline.adapters.migrate import head_revision
from shadowline.adapters.peer import PeerClient
from shadowline.domain import signing
from shadowline.domain.errors import PeerRefused
from tests.conftest import ADMIN_PASSWORD
from tests.e2e.conftest import Pair
from tests.openapi_answers import assert_conforms

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret"  # tests.e2e.conftest.make_process


def _wait(client: httpx.Client, state: str) -> None:
    deadline = time.monotonic() + 30
    while (client.get("/ha").json().get("shadow") or {}).get("state") != state:
        assert time.monotonic() < deadline, f"the shadow never became {state}"
        time.sleep(0.1)


async def _signed(pair: Pair, url: str, caller: str, method: str, path: str, **options: Any) -> Any:
    peer = PeerClient(url, SECRET, caller, cluster=pair.cluster)
    try:
        return await peer.call(method, path, **options)
    finally:
        await peer.close()


async def test_every_ha_answer_of_a_real_pair_is_what_the_document_says(pair: Pair) -> None:
    pair.set_up()
    master, shadow = pair.admin(pair.master), pair.admin(pair.shadow)
    with master, shadow:
        doc = master.get("/openapi.json").json()
        for n in range(3):
            value = {"region": "eu10", "subaccount_id": f"s{n}"}
            assert master.put(f"/config/subaccount/s{n}", json=value).status_code == 201
        _wait(master, "connected")
        for client in (master, shadow):
            checked = client.get("/ha/verify")
            assert checked.status_code == 200 and checked.json()["agree"], checked.text
            assert_conforms(doc, "GET", "/ha/verify", checked.json())
            audit = client.get("/audit/verify").json()
            assert audit["ok"], audit
            assert_conforms(doc, "GET", "/audit/verify", audit)

        chain = await _signed(pair, pair.shadow.url, "master", "GET", "/ha/peer/chain")
        assert_conforms(doc, "GET", "/ha/peer/chain", chain)
        ack = {"position": chain["position"], "chain": chain["chain"]}
        acked = await _signed(pair, pair.master.url, "shadow", "POST", "/ha/peer/ack", body=ack)
        assert acked["state"] == "confirmed", acked
        assert_conforms(doc, "POST", "/ha/peer/ack", acked)
        register = {  # the shadow joining again, as it first did (application.ha)
            "instance": "shadow",
            "url": pair.shadow.url,
            "version": __version__,
            "revision": head_revision(),
            "cluster": pair.cluster,
        }
        registered = await _signed(
            pair,
            pair.master.url,
            "shadow",
            "POST",
            "/ha/peer/register",
            body=register,
            auth=("admin", ADMIN_PASSWORD),
        )
        assert registered["state"] == "confirmed", registered
        assert_conforms(doc, "POST", "/ha/peer/register", registered)
        for url in (None, 7, "file:///etc/passwd"):  # a clear 422, not a 500 or a stored URL
            with pytest.raises(PeerRefused) as refused:
                await _signed(
                    pair,
                    pair.master.url,
                    "shadow",
                    "POST",
                    "/ha/peer/register",
                    body={**register, "url": url},
                    auth=("admin", ADMIN_PASSWORD),
                )
            assert refused.value.status == 422, refused.value

        switched = master.post("/ha/switch-roles")
        assert switched.status_code == 200, switched.text
        assert_conforms(doc, "POST", "/ha/switch-roles", switched.json())
        fork = await _signed(
            pair,
            pair.shadow.url,
            "master",
            "GET",
            "/ha/peer/fork",
            params={"after_epoch": 1},
        )
        assert fork["epoch"] == 2, fork
        assert_conforms(doc, "GET", "/ha/peer/fork", fork)
        quarantine = master.get("/ha/quarantine").json()
        assert_conforms(doc, "GET", "/ha/quarantine", quarantine)

        removed = shadow.delete("/ha/shadow")  # the new master forgets the old one
        assert removed.status_code == 200 and removed.json() == {"removed": "master"}
        assert_conforms(doc, "DELETE", "/ha/shadow", removed.json())
        command = {  # a watchdog's promote of the old master, now a shadow in epoch 2
            "type": "promote",
            "cluster": pair.cluster,
            "shadow": "master",
            "epoch": 3,
            "previous_epoch": 2,
            "command_id": str(uuid.uuid4()),
            "issued_at": time.time(),
            "issued_by": "watchdog-e2e",
            "reason": "a test of the promote answer",
        }
        promoted = await _signed(
            pair,
            pair.master.url,
            "watchdog-e2e",
            "POST",
            "/ha/peer/promote",
            body=signing.sign(SECRET, command),
        )
        assert (promoted["role"], promoted["epoch"]) == ("master", 3), promoted
        assert_conforms(doc, "POST", "/ha/peer/promote", promoted)
