"""When a master leaves its broker node (application.liveness): only a node that confirms
nothing, sends nothing for half the lease and answers no request either. A live node whose
confirms wait on a queue of another, frozen node is kept: a third node would wait the same."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from shadowline.adapters.broker import BrokerLink, Names
from shadowline.application.liveness import Liveness
from tests.conftest import make_settings


class Stalled:
    """A link whose confirms never come, silent for `quiet` s, answering requests or not."""

    def __init__(self, answers: bool) -> None:
        self._answers = answers
        self.left: list[str] = []

    ready = True

    async def start(self) -> None:
        pass

    def quiet(self) -> float | None:
        return 10.0

    async def answers(self, within: float) -> bool:
        return self._answers

    def abandon_node(self, why: str, silent: float) -> bool:
        self.left.append(why)
        return True

    async def publish_monitoring(
        self, routing_key: str, body: Any, ttl: float | None = None
    ) -> None:
        await asyncio.Event().wait()


def _liveness(link: Stalled) -> Liveness:
    settings = make_settings("postgresql://unused@127.0.0.1/unused")
    return Liveness(settings, link, lambda: {"role": "master", "epoch": 1})


async def test_a_silent_node_that_answers_no_request_is_left() -> None:
    link = Stalled(answers=False)
    assert not await _liveness(link).beat_once()
    assert len(link.left) == 1 and "nor an answer" in link.left[0]


async def test_a_node_that_still_answers_is_kept_though_its_confirms_stall() -> None:
    link = Stalled(answers=True)
    assert not await _liveness(link).beat_once()
    assert link.left == []


class Channel:
    """A channel whose Basic.Qos answers when told to; records whether it was cancelled."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.cancelled = False

    async def set_qos(self, prefetch_count: int) -> None:
        try:
            await self.answer.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_a_probe_that_times_out_is_left_to_finish_never_cancelled() -> None:
    """aiormq closes a channel whose RPC is cancelled, and the broker then the connection: a
    slow but live node must not lose the heartbeats' connection to the probe of its liveness."""
    link = BrokerLink("amqp://127.0.0.1:9/", Names("c1"), "test")
    channel = Channel()
    link._publish = cast(Any, channel)
    assert not await link.answers(0.01)
    channel.answer.set()
    await asyncio.sleep(0.01)
    assert not channel.cancelled
    assert await link.answers(0.01)
