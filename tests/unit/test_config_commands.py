"""How the master answers config commands from the broker (instance.config_commands), with the
config service, the command log and the broker replaced by small fakes that record what they
are given: every reply passes schemas/commands/config-reply.json, a refusal carries the status
PUT/DELETE would get, nothing is acknowledged before it is answered, and what cannot be
answered is dead-lettered with a valid alert.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from shadowline.adapters.broker import CONFIG_DELIVERY_LIMIT, deliveries, last_delivery
from shadowline.adapters.command_log import Applied
from shadowline.adapters.resources import load_config_schemas
from shadowline.application.roles import CurrentRole
from shadowline.application.service import WriteResult
from shadowline.client import command
from shadowline.domain.errors import (
    NotAcknowledged,
    NotFound,
    NotWritable,
    Unavailable,
    VersionConflict,
)
from shadowline.domain.roles import FenceReason, Role, RoleState
from shadowline.domain.validation import Catalog
from shadowline.entrypoints.amqp.config_commands import (
    CommandReader,
    ConfigCommands,
    command_schemas,
)
from shadowline.settings import Settings
from tests.unit.test_message_schemas import check_message, problems

SUBACCOUNT = {"region": "eu10", "subaccount_id": "a1"}


CATALOG = Catalog(load_config_schemas())


@dataclass
class Gate:
    """The commit gate: admits positions the shadow acknowledged, else says the master may not."""

    acked: int
    admitted: list[int] = field(default_factory=list)

    async def admit(self, position: int, master_url: str | None = None) -> None:
        if position > self.acked:
            raise NotWritable("the shadow did not acknowledge this write", master_url)
        self.admitted.append(position)


@dataclass
class Service:
    """ConfigService as the commands use it: the real validation of values, then a write with
    metadata (recorded) or a given error."""

    fail: Exception | None = None
    role: CurrentRole = field(default_factory=lambda: CurrentRole(RoleState(Role.MASTER)))
    gate: Gate | None = None
    calls: list[tuple[str, str, str, Any, int | None, dict[str, Any]]] = field(default_factory=list)

    async def put(
        self, kind: str, name: str, value: Any, expected: int | None, meta: Any
    ) -> WriteResult:
        CATALOG.check(kind, name, value)
        return self._write("put", kind, name, value, expected, meta)

    async def delete(self, kind: str, name: str, expected: int | None, meta: Any) -> WriteResult:
        return self._write("delete", kind, name, None, expected, meta)

    async def admit_again(self, position: int) -> None:
        if self.role.role == "master" and self.gate is not None:
            await self.gate.admit(position, self.role.master_url)

    def _write(
        self, verb: str, kind: str, name: str, value: Any, expected: Any, meta: Any
    ) -> WriteResult:
        if self.fail is not None:
            raise self.fail
        self.calls.append((verb, kind, name, value, expected, meta))
        return WriteResult(kind, name, 4, 1042, 2, created=False)


@dataclass
class Log:
    found: Applied | None = None

    async def applied(self, command_id: str) -> Applied | None:
        return self.found


@dataclass
class Broker:
    done: list[str]
    alerts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def publish_reply(self, reply_to: str, correlation_id: str | None, body: Any) -> None:
        self.done.append(f"reply {correlation_id} {orjson.dumps(body).decode()}")


@dataclass
class Delivery:
    """An incoming command as aio-pika hands it over; records acks and rejections."""

    done: list[str]
    body: bytes
    routing_key: str = "config.put.subaccount"
    user_id: str | None = "publisher-1"
    reply_to: str | None = "amq.rabbitmq.reply-to.abc"
    correlation_id: str | None = "corr-1"
    message_id: str | None = "msg-1"
    headers: dict[str, Any] = field(default_factory=dict)

    async def ack(self) -> None:
        self.done.append("ack")

    async def nack(self, requeue: bool = True) -> None:
        self.done.append(f"nack requeue={requeue}")

    async def reject(self, requeue: bool = False) -> None:
        self.done.append(f"reject requeue={requeue}")


def commands(service: Service, log: Log | None = None) -> tuple[ConfigCommands, Broker]:
    done: list[str] = []
    broker = Broker(done)
    handler = ConfigCommands(
        service=service,  # type: ignore[arg-type]
        commands=log or Log(),  # type: ignore[arg-type]
        broker=broker,  # type: ignore[arg-type]
        reader=CommandReader(command_schemas(), 4096, frozenset({"p", "publisher-1"})),
        alert=lambda name, message, details: broker.alerts.append((name, details)),
    )
    return handler, broker


def put_body(**changes: Any) -> bytes:
    return orjson.dumps({**command("subaccount", "eu10", SUBACCOUNT), **changes})


async def test_an_applied_put_is_answered_as_put_answers_and_recorded_with_its_author() -> None:
    service = Service()
    handler, _ = commands(service)
    body = put_body(expected_version=3, reason="CHG-7")
    reply = await handler.answer("config.put.subaccount", body, "publisher-1")
    command_id = orjson.loads(body)["command_id"]
    assert reply == {
        "command_id": command_id, "ok": True, "kind": "subaccount", "name": "eu10",
        "version": 4, "position": 1042, "epoch": 2,
    }  # fmt: skip
    assert problems("commands/config-reply.json", reply) == []
    ((verb, kind, name, value, expected, meta),) = service.calls
    assert (verb, kind, name, value, expected) == ("put", "subaccount", "eu10", SUBACCOUNT, 3)
    assert meta == {
        "actor": "amqp:publisher-1",
        "request_id": command_id,
        "command_id": command_id,
        "reason": "CHG-7",
    }


async def test_a_command_applied_before_is_answered_from_its_event_once_admitted_never_twice() -> (
    None
):
    service = Service()
    applied = Applied("ConfigPut", "subaccount", "eu10", 2, 17, 1)
    handler, _ = commands(service, Log(applied))
    reply = await handler.answer("config.put.subaccount", put_body(), "publisher-1")
    assert (reply["ok"], reply["version"], reply["position"], reply["duplicate"]) == (
        True, 2, 17, True,
    )  # fmt: skip
    assert problems("commands/config-reply.json", reply) == []
    assert service.calls == []
    service.gate = Gate(acked=16)  # the first attempt stopped at the gate: no answer yet
    with pytest.raises(NotWritable):
        await handler.answer("config.put.subaccount", put_body(), "publisher-1")
    service.gate.acked = 17
    assert (await handler.answer("config.put.subaccount", put_body(), "p"))["ok"] is True
    assert service.gate.admitted == [17]
    reused = await handler.answer(
        "config.delete.subaccount",
        orjson.dumps(command("subaccount", "eu10", command_id=str(uuid.uuid4()))),
        "publisher-1",
    )
    assert (reused["ok"], reused["status"]) == (False, 409)


TOO_LARGE = put_body(reason="x" * 400, value={**SUBACCOUNT, "display_name": "y" * 4000})


@pytest.mark.parametrize(
    ("routing_key", "body", "user_id", "fail", "status"),
    [
        ("config.put.subaccount", TOO_LARGE, "p", None, 413),
        ("config.put.subaccount", b"{nope", "p", None, 400),
        ("config.rename.subaccount", put_body(), "p", None, 400),
        ("config.put.subaccount", put_body(), None, None, 403),
        ("config.put.subaccount", put_body(), "shadowline-other-master", None, 403),
        ("config.put.subaccount", put_body(value={"region": 10}), "p", None, 422),
        ("config.put.subaccount", put_body(expected_version=0), "p", None, 422),
        ("config.put.log-level", put_body(kind="log-level", value={"level": "INFO"}), "p", None, 422),
        ("config.put.resource", put_body(), "p", None, 422),
        ("config.put.subaccount", put_body(), "p", VersionConflict("subaccount/eu10", 3, 4), 409),
        ("config.delete.subaccount", put_body(value=None), "p", None, 422),
        ("config.put.subaccount", put_body(), "p", NotFound("subaccount/eu10 does not exist"), 404),
    ],
    ids=["too large", "not JSON", "unknown verb", "no user_id", "not a publisher", "schema violation",
         "version 0", "local-only kind", "kind not the routed one", "version conflict",
         "delete with a value", "absent"],
)  # fmt: skip
async def test_a_refused_command_is_answered_with_the_status_http_would_give_and_a_valid_reply(
    routing_key: str, body: bytes, user_id: str | None, fail: Exception | None, status: int
) -> None:
    handler, broker = commands(Service(fail=fail))
    reply = await handler.answer(routing_key, body, user_id)
    assert (reply["ok"], reply["status"]) == (False, status), reply
    assert problems("commands/config-reply.json", reply) == []
    alerted = [name for name, _ in broker.alerts]
    assert alerted == (["rejected-command"] if status == 403 else [])


async def test_a_command_without_user_id_raises_a_valid_rejected_command_alert() -> None:
    handler, broker = commands(Service())
    body = put_body()
    await handler.answer("config.put.subaccount", body, None)
    ((name, details),) = broker.alerts
    alert = {"instance": "node-a", "at": 1.0, "alert": name, "message": "m", "details": details}
    alert |= {"state": "active", "role": "master", "raised_at": 1.0, "count": 1}  # as Monitor
    assert check_message("shadowline.prod.monitoring", f"alert.{name}", alert) == []
    assert details["command_id"] == orjson.loads(body)["command_id"]


async def test_a_master_that_may_not_write_neither_answers_nor_acknowledges_the_command() -> None:
    handler, broker = commands(Service(fail=NotWritable("fenced", None)))
    message = Delivery(broker.done, put_body())
    assert await handler._handle(message) is False  # type: ignore[arg-type]
    assert broker.done == []


async def test_the_reply_goes_out_before_the_ack_so_a_crash_between_them_repeats_the_answer() -> (
    None
):
    handler, broker = commands(Service())
    message = Delivery(broker.done, put_body())
    assert await handler._handle(message) is True  # type: ignore[arg-type]
    assert [step.split(" ")[0] for step in broker.done] == ["reply", "ack"]
    assert broker.done[0].startswith("reply corr-1 ")


async def test_a_refused_command_without_reply_to_is_dead_lettered_with_a_valid_alert() -> None:
    handler, broker = commands(Service())
    message = Delivery(broker.done, b"\xff", reply_to=None)
    await handler._handle(message)  # type: ignore[arg-type]
    assert broker.done == ["reject requeue=False"]
    ((name, details),) = broker.alerts
    alert = {"instance": "node-a", "at": 1.0, "alert": name, "message": "m", "details": details}
    alert |= {"state": "active", "role": "master", "raised_at": 1.0, "count": 1}  # as Monitor
    assert check_message("shadowline.prod.monitoring", f"alert.{name}", alert) == []


async def test_a_valid_command_without_reply_to_is_applied_and_acknowledged() -> None:
    service = Service()
    handler, broker = commands(service)
    await handler._handle(Delivery(broker.done, put_body(), reply_to=None))  # type: ignore[arg-type]
    assert (len(service.calls), broker.done) == (1, ["ack"])


@pytest.mark.parametrize(
    ("delivered", "outcome"),
    [(0, "nack requeue=True"), (CONFIG_DELIVERY_LIMIT - 1, "reject requeue=False")],
    ids=["first failure: retried", "at the delivery limit: dead-lettered"],
)
async def test_a_command_that_fails_unexpectedly_is_retried_then_dead_lettered(
    delivered: int, outcome: str
) -> None:
    handler, broker = commands(Service(fail=RuntimeError("a bug")))
    message = Delivery(broker.done, put_body(), headers={"x-delivery-count": delivered})
    await handler._handle(message)  # type: ignore[arg-type]
    assert broker.done == [outcome]
    assert [name for name, _ in broker.alerts] == (["dead-lettered"] if delivered else [])


async def test_a_repeated_refused_command_id_gets_the_same_refusal_even_if_it_would_now_apply() -> (
    None
):
    service = Service(fail=VersionConflict("subaccount/eu10", 3, 4))
    handler, _ = commands(service)
    body = put_body(expected_version=3)
    first = await handler.answer("config.put.subaccount", body, "publisher-1")
    service.fail = None  # the item is now at the version the command expected
    again = await handler.answer("config.put.subaccount", body, "publisher-1")
    assert (first["status"], again) == (409, first)
    assert service.calls == []


async def test_a_database_outage_is_waited_out_with_the_command_neither_answered_nor_returned() -> (
    None
):
    service = Service(fail=Unavailable("event store unavailable"))
    handler, broker = commands(service)
    message = Delivery(broker.done, put_body())

    async def recover() -> None:
        await asyncio.sleep(0.5)
        service.fail = None

    recovery = asyncio.create_task(recover())
    assert await handler._handle(message) is True  # type: ignore[arg-type]
    await recovery
    reply = orjson.loads(broker.done[0].split(" ", 2)[2])
    assert (reply["ok"], broker.done[1:]) == (True, ["ack"])
    assert len(service.calls) == 1 and broker.alerts == []


async def test_a_command_stored_but_not_yet_acknowledged_waits_in_place_not_spending_deliveries() -> (
    None
):
    """Handing it back would spend a delivery per try and, at the limit, dead-letter a command
    that is stored: it waits here until it is acknowledged, as in an outage."""
    service = Service(fail=NotAcknowledged("the shadow did not acknowledge this write", None))
    handler, broker = commands(service)

    async def acknowledged() -> None:
        await asyncio.sleep(0.3)
        service.fail = None

    later = asyncio.create_task(acknowledged())
    assert await handler._handle(Delivery(broker.done, put_body())) is True  # type: ignore[arg-type]
    await later
    assert orjson.loads(broker.done[0].split(" ", 2)[2])["ok"] is True
    assert broker.done[1:] == ["ack"]


async def test_a_master_fenced_during_an_outage_hands_the_command_back_unanswered() -> None:
    service = Service(fail=Unavailable("event store unavailable"))
    handler, broker = commands(service)

    async def fence() -> None:
        await asyncio.sleep(0.3)
        service.role.set(service.role.state.fenced_by(FenceReason.LEASE_LOST, "lease-lost"))

    fencing = asyncio.create_task(fence())
    handled = await handler._handle(Delivery(broker.done, put_body()))  # type: ignore[arg-type]
    await fencing
    assert (handled, broker.done) == (False, [])


async def test_a_publisher_not_allowed_here_is_refused_and_alerted() -> None:
    handler, broker = commands(Service())
    reply = await handler.answer("config.put.subaccount", put_body(), "shadowline-b-master")
    assert (reply["ok"], reply["status"]) == (False, 403)
    assert "may not publish config commands" in reply["error"]
    assert [name for name, _ in broker.alerts] == ["rejected-command"]


async def test_guest_on_default_settings_is_refused_and_alerted_and_nothing_is_written() -> None:
    # SHADOWLINE_AMQP_URL's default user is guest, and SHADOWLINE_COMMAND_PUBLISHERS is unset.
    default = Settings(
        amqp_url=SecretStr("amqp://guest:guest@127.0.0.1:5672/"), command_publishers=""
    )
    service, alerts = Service(), []
    handler = ConfigCommands(
        service=service,  # type: ignore[arg-type]
        commands=Log(),  # type: ignore[arg-type]
        broker=Broker([]),  # type: ignore[arg-type]
        reader=CommandReader(command_schemas(), 4096, default.publishers),
        alert=lambda name, message, details: alerts.append(name),
    )
    reply = await handler.answer("config.put.subaccount", put_body(), "guest")
    assert (reply["ok"], reply["status"]) == (False, 403)
    assert "'guest' may not publish config commands" in reply["error"]
    assert (alerts, service.calls) == (["rejected-command"], [])


def test_a_reader_that_allows_guest_warns_once_and_one_that_does_not_is_silent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="shadowline.entrypoints.amqp.command_reader"):
        CommandReader(command_schemas(), 4096, frozenset({"shadowline-b-publisher"}))
        assert caplog.records == []
        CommandReader(command_schemas(), 4096, frozenset({"guest"}))
    (record,) = caplog.records
    assert "'guest' may publish config commands" in record.getMessage()


@dataclass
class Queue:
    """The config command queue as _hand_back uses it: cancelling the consumer."""

    cancelled: list[str] = field(default_factory=list)

    async def cancel(self, tag: str) -> None:
        self.cancelled.append(tag)


@pytest.mark.parametrize(
    ("delivered", "outcome"),
    [(0, "nack requeue=True"), (CONFIG_DELIVERY_LIMIT - 2, "nack requeue=True"),
     (CONFIG_DELIVERY_LIMIT - 1, "reject requeue=False"),
     (CONFIG_DELIVERY_LIMIT, "reject requeue=False")],
    ids=["first delivery", "two left", "the last before the spare", "the spare"],
)  # fmt: skip
async def test_a_command_handed_back_on_its_last_delivery_is_dead_lettered_with_a_valid_alert(
    delivered: int, outcome: str
) -> None:
    """A master that may not write hands back what it holds; RabbitMQ would dead-letter a
    return past the limit silently, so the last one is dead-lettered here, with the alert."""
    handler, broker = commands(Service())
    message = Delivery(broker.done, put_body(), headers={"x-delivery-count": delivered})
    queue = Queue()
    await handler._hand_back(queue, "ctag", asyncio.Queue(), message)  # type: ignore[arg-type]
    assert (queue.cancelled, broker.done) == (["ctag"], [outcome])
    dead = [details for name, details in broker.alerts if name == "dead-lettered"]
    assert dead == ([] if outcome.startswith("nack") else [{"message_id": "msg-1",
                    "routing_key": "config.put.subaccount"}])  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "count"),
    [({}, 0), ({"x-delivery-count": 0}, 0), ({"x-delivery-count": 7}, 7),
     ({"x-delivery-count": True}, 0), ({"x-delivery-count": "19"}, 0),
     ({"x-delivery-count": -3}, 0)],
)  # fmt: skip
def test_the_delivery_count_is_read_from_the_quorum_queue_header_and_nothing_else(
    headers: dict[str, Any], count: int
) -> None:
    message = Delivery([], b"", headers=headers)
    assert deliveries(message) == count  # type: ignore[arg-type]
    assert last_delivery(message, count + 1) is True  # type: ignore[arg-type]
    assert last_delivery(message, count + 2) is False  # type: ignore[arg-type]
