"""A shadow installs the master's image only when it arrives intact."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from shadowline.adapters.peer import PeerClient
from shadowline.application.ports.peer import Peer
from shadowline.application.replica import Replicator
from shadowline.bootstrap import Instance
from shadowline.domain.errors import Unavailable
from tests.conftest import started

VALUE = {"region": "eu10", "subaccount_id": "a1"}


def _peer_of(master: Instance) -> PeerClient:
    client = PeerClient(
        "http://master", "test-cluster-secret", "shadow", cluster=master.settings.cluster
    )
    client._http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=master.asgi), base_url="http://master"
    )
    return client


class Tampering:
    """Changes one item on the way, as a broken proxy or an attacker would."""

    def __init__(self, real: PeerClient) -> None:
        self.real = real

    async def lines(self, path: str, params: dict[str, Any] | None = None) -> list[bytes]:
        return [line.replace(b'"eu10"', b'"us10"') for line in await self.real.lines(path, params)]


async def _bootstrap(
    shadow: Instance, peer: Peer, master_position: int, alerts: list[str]
) -> Replicator:
    replica = Replicator(
        writer=shadow.writer,
        store=shadow.store,
        peer=peer,
        alert=lambda name, message, details: alerts.append(name),
        secret="test-cluster-secret",
        cluster=shadow.settings.cluster,
        catalog=shadow.service.catalog,
    )
    replica.master_position = master_position
    await replica.bootstrap()
    return replica


async def test_a_corrupt_image_is_refused_and_an_intact_one_installed(
    db_factory: Callable[[], Awaitable[str]],
) -> None:
    async with started(await db_factory()) as master, started(await db_factory()) as shadow:
        for n in range(30):
            await master.service.put("subaccount", f"s{n}", VALUE, None, {"actor": "t"})
        await master.service.delete("subaccount", "s7", None, {"actor": "t"})
        head = master.writer.position
        real = _peer_of(master)
        alerts: list[str] = []
        with pytest.raises(Unavailable, match="corrupt"):
            # an image is read through lines() alone, all that Tampering has
            await _bootstrap(shadow, Tampering(real), head, alerts)  # type: ignore[arg-type]
        assert alerts == ["corrupt-snapshot"]
        assert shadow.writer.position == 0 and (await shadow.store.current())[1] == {}

        await _bootstrap(shadow, real, head, alerts)
        assert shadow.writer.position == head
        assert shadow.writer.chain == master.writer.chain
        assert (await shadow.store.current()) == (await master.store.current())
        # Tombstones came along: re-creating the deleted item continues its version sequence.
        assert (await shadow.store.versions()) == (await master.store.versions())
        await real.close()
