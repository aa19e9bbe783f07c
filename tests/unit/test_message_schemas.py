"""The broker's messages, their JSON Schemas and schemas/asyncapi.yaml agree with each other and
with the code that builds them.

Three layers: the schema files are valid and their examples pass; the AsyncAPI document is
well formed, complete and points only at files that exist; and messages built by the real code
paths (with the broker, the database and the peer replaced by small fakes that record what they
are given) pass the schema of the routing key they are published under.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator

from shadowline.adapters.metrics import Metrics
from shadowline.adapters.peer import PeerRefused
from shadowline.adapters.resources import load_config_schemas
from shadowline.application.failover import Failover
from shadowline.application.gate import CommitGate
from shadowline.application.liveness import Liveness
from shadowline.application.monitoring import CHANGES_EVERY, Monitor
from shadowline.application.replica import Replicator
from shadowline.application.roles import CurrentRole
from shadowline.application.status import Whoami
from shadowline.application.supervisor import Running
from shadowline.cli.broker import grants
from shadowline.domain import signing
from shadowline.domain import watchdog as rules
from shadowline.domain.alerting import AlertName
from shadowline.domain.errors import Conflict, Forbidden, Unavailable
from shadowline.domain.events import GENESIS, Event, link
from shadowline.domain.ha import HaRecord, RoleChange
from shadowline.domain.promote import PromoteCommand
from shadowline.domain.records import Head
from shadowline.domain.roles import FenceReason, Role, RoleState
from shadowline.domain.validation import Catalog
from shadowline.entrypoints.amqp.promote import PromoteCommands
from shadowline.entrypoints.amqp.replication import QueuedEvent
from shadowline.settings import Settings
from shadowline.watchdog import service as watchdog_service
from shadowline.watchdog.service import ClusterWatch

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
ASYNCAPI = SCHEMAS / "asyncapi.yaml"
MESSAGE_SCHEMAS = sorted([*SCHEMAS.glob("monitoring/*.json"), *SCHEMAS.glob("commands/*.json")])
SECRET = "unit-secret"


# -- the contract, as files ----------------------------------------------------------------------


@cache
def schema(relative: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / relative).read_text())
    return loaded


@cache
def validator(relative: str) -> Draft202012Validator:
    return Draft202012Validator(
        schema(relative), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def problems(relative: str, doc: Any) -> list[str]:
    """Every way `doc` breaks schemas/<relative>, as `path: message` lines."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator(relative).iter_errors(doc)
    ]


@cache
def asyncapi() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text())
    return loaded


def pointer(doc: Any, fragment: str) -> Any:
    """Resolve a JSON pointer (`/a/b`) in `doc`; KeyError/IndexError if it leads nowhere."""
    for token in filter(None, fragment.split("/")):
        token = token.replace("~1", "/").replace("~0", "~")
        doc = doc[int(token)] if isinstance(doc, list) else doc[token]
    return doc


def deref(node: Any) -> Any:
    """Follow local `$ref`s of the AsyncAPI document until a real object is reached."""
    while isinstance(node, dict) and set(node) == {"$ref"} and node["$ref"].startswith("#"):
        node = pointer(asyncapi(), node["$ref"][1:])
    return node


def refs(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every `$ref` in the AsyncAPI document, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            else:
                yield from refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from refs(value, f"{where}/{index}")


def payload_file(message: dict[str, Any]) -> str:
    """The schema file (relative to schemas/) a message's payload refers to."""
    return str(message["payload"]["schema"]["$ref"]).removeprefix("./")


@dataclass(frozen=True)
class Route:
    """One channel of the AsyncAPI document as a matcher of (exchange, routing key)."""

    name: str
    pattern: re.Pattern[str]
    parameters: dict[str, dict[str, Any]]
    message: dict[str, Any]

    def parameters_of(self, exchange: str, routing_key: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(f"/exchanges/{exchange}/{routing_key}")
        if found is None:
            return None
        values = found.groupdict()
        for name, value in values.items():
            if "enum" in self.parameters[name] and value not in self.parameters[name]["enum"]:
                return None
        return values

    def mismatches(self, values: dict[str, str], payload: Any) -> list[str]:
        """Parameters whose `location` in the payload disagrees with the routing key."""
        found = []
        for name, value in values.items():
            location = self.parameters[name].get("location")
            if location:
                at = pointer(payload, location.split("#", 1)[1])
                if at != value:
                    found.append(
                        f"{{{name}}} is {value!r} in the routing key, {at!r} in {location}"
                    )
        return found


def routes() -> list[Route]:
    found = []
    for name, channel in asyncapi()["channels"].items():
        if channel["address"] is None:  # a reply's: the command's reply_to, known at run time
            continue
        parameters = {k: deref(v) for k, v in channel.get("parameters", {}).items()}
        regex = ""
        for literal, parameter in re.findall(r"([^{]*)(?:\{(\w+)\})?", channel["address"]):
            regex += re.escape(literal)
            if parameter:
                word = r"[a-z0-9][a-z0-9._-]*" if parameter == "cluster" else r"[^./]+"
                regex += f"(?P<{parameter}>{word})"
        (message,) = (deref(m) for m in channel["messages"].values())
        found.append(Route(name, re.compile(regex), parameters, message))
    return found


def route_of(exchange: str, routing_key: str) -> tuple[Route, dict[str, str]]:
    """The one channel that documents this (exchange, routing key); fails if none or several."""
    matches = [
        (r, v) for r in routes() if (v := r.parameters_of(exchange, routing_key)) is not None
    ]
    assert len(matches) == 1, (
        f"{exchange} {routing_key}: documented by {[r.name for r, _ in matches]}"
    )
    return matches[0]


def check_message(exchange: str, routing_key: str, body: Any) -> list[str]:
    """Everything wrong with one message as a monitoring consumer would see it."""
    route, values = route_of(exchange, routing_key)
    return problems(payload_file(route.message), body) + route.mismatches(values, body)


# -- the schema files ----------------------------------------------------------------------------


def schema_id(path: Path) -> str:
    return str(path.relative_to(SCHEMAS))


@pytest.mark.parametrize("path", MESSAGE_SCHEMAS, ids=schema_id)
def test_every_message_schema_is_a_described_draft_2020_12_schema_with_examples(path: Path) -> None:
    doc = schema(schema_id(path))
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].startswith("urn:shadowline:")
    assert doc["description"] and doc["examples"]
    for name, prop in doc["properties"].items():
        assert prop.get("description"), f"{name} has no description"


@pytest.mark.parametrize(
    ("path", "index"),
    [(p, i) for p in MESSAGE_SCHEMAS for i in range(len(schema(schema_id(p))["examples"]))],
    ids=lambda v: schema_id(v) if isinstance(v, Path) else str(v),
)
def test_every_example_of_a_message_schema_is_valid(path: Path, index: int) -> None:
    example = schema(schema_id(path))["examples"][index]
    assert problems(schema_id(path), example) == []


def test_the_schemas_refuse_what_is_not_documented() -> None:
    beat = dict(schema("monitoring/heartbeat.json")["examples"][0])
    assert problems("monitoring/heartbeat.json", {**beat, "extra": 1})
    assert problems("monitoring/heartbeat.json", {**beat, "role": "standby"})
    alert = schema("monitoring/alert.json")["examples"][0]
    assert problems("monitoring/alert.json", {**alert, "alert": "on-fire"})
    assert problems("monitoring/alert.json", {**alert, "alert": "quarantined", "details": {}})
    promote = schema("commands/promote.json")["examples"][0]
    assert problems("commands/promote.json", {**promote, "signature": "not hex"})


def test_the_promote_examples_are_signed_as_the_code_signs_commands() -> None:
    for example in schema("commands/promote.json")["examples"]:
        unsigned = {k: v for k, v in example.items() if k != "signature"}
        assert signing.sign("example-secret", unsigned) == example


# -- the AsyncAPI document -----------------------------------------------------------------------


def test_the_asyncapi_document_is_asyncapi_3_over_amqp() -> None:
    doc = asyncapi()
    assert re.fullmatch(r"3\.\d+\.\d+", doc["asyncapi"])
    assert doc["defaultContentType"] == "application/json"
    (server,) = doc["servers"].values()
    assert server["protocol"] == "amqp" and server["protocolVersion"] == "0.9.1"
    assert "{vhost}" in server["pathname"] and "vhost" in server["variables"]
    assert {"channels", "operations", "components"} <= doc.keys()


def test_every_ref_in_the_asyncapi_document_resolves() -> None:
    unresolved = []
    for where, ref in refs(asyncapi()):
        target, fragment = urldefrag(ref)
        try:
            if target:
                file = (ASYNCAPI.parent / target).resolve()
                assert file.is_file(), f"{file} does not exist"
                pointer(json.loads(file.read_text()), fragment)
            else:
                pointer(asyncapi(), fragment)
        except (AssertionError, KeyError, IndexError, ValueError) as error:
            unresolved.append(f"{where}: {ref} ({error})")
    assert unresolved == []


def test_every_message_schema_is_the_payload_of_a_documented_message() -> None:
    payloads = {payload_file(m) for m in asyncapi()["components"]["messages"].values()}
    assert payloads == {schema_id(p) for p in MESSAGE_SCHEMAS} | {"event.json"}


def test_every_channel_parameter_is_in_its_address_and_every_placeholder_is_a_parameter() -> None:
    for name, channel in asyncapi()["channels"].items():
        placeholders = set(re.findall(r"\{(\w+)\}", channel["address"] or ""))
        assert placeholders == set(channel.get("parameters", {})), name


def test_every_monitoring_routing_key_of_the_design_is_documented() -> None:
    monitoring = "shadowline.prod.monitoring"
    for key in ("heartbeat.node-a", "role.changed", "alert.fenced", "config.changed"):
        route_of(monitoring, key)
    for step in ("probing", "promoting", "promoted", "refused", "master-alive", "switched"):
        route_of(monitoring, f"failover.{step}")
    route_of("shadowline.prod.events", "config.subaccount.put")
    route_of("shadowline.prod.events", "ha.MasterPromoted")
    route_of("shadowline.prod.commands", "promote.node-b")
    route_of("shadowline.prod.commands", "config.put.system-mapping")
    route_of("shadowline.prod.commands", "config.delete.resource")


def test_config_commands_are_documented_only_for_replicated_kinds_and_have_a_reply() -> None:
    with pytest.raises(AssertionError):
        route_of("shadowline.prod.commands", "config.put.log-level")
    for name in ("sendConfigPut", "sendConfigDelete", "applyConfigPut", "applyConfigDelete"):
        reply = deref(asyncapi()["operations"][name]["reply"])
        assert payload_file(deref(reply["messages"][0])) == "commands/config-reply.json"


def _scheme_of(user: str) -> tuple[dict[str, Any], str]:
    """The security scheme documenting broker user `user` of cluster prod, and the instance
    it stands for (`{instance}` in the document; "" for the other users). A user named
    outright (watchdog, ...) wins over the pattern of the instances' users."""
    schemes = asyncapi()["components"]["securitySchemes"].values()
    named = [(s, u) for s in schemes for u in s["x-rabbitmq-users"]]
    for scheme, documented in sorted(named, key=lambda found: "{instance}" in found[1]):
        pattern = re.escape(documented.replace("{cluster}", "prod"))
        found = re.fullmatch(pattern.replace(r"\{instance\}", "(.+)"), user)
        if found:
            return scheme, (found.group(1) if found.groups() else "")
    raise AssertionError(f"{user} is not documented")


def _expand(text: str, instance: str) -> str:
    # prod, master and shadow need no escaping in a regular expression
    return text.replace("{cluster}", "prod").replace("{instance}", instance)


@pytest.mark.parametrize(
    ("role", "exchange", "allowed", "refused"),
    [("publisher", "commands", "config.put.subaccount", "promote.node-b"),
     ("watchdog", "commands", "promote.node-b", "config.put.subaccount"),
     ("watchdog", "monitoring", "failover.promoted", "heartbeat.node-b"),
     ("master", "monitoring", "heartbeat.master", "heartbeat.shadow"),
     ("shadow", "commands", "", "promote.shadow")],
)  # fmt: skip
def test_the_topic_permissions_are_the_ones_broker_setup_grants(
    role: str, exchange: str, allowed: str, refused: str
) -> None:
    (grant,) = [g for g in grants("prod") if g.user == f"shadowline-prod-{role}"]
    scheme, instance = _scheme_of(grant.user)
    documented = [
        (
            _expand(t["exchange"], instance),
            _expand(t["write"], instance),
            _expand(t["read"], instance),
        )
        for t in scheme["x-rabbitmq-topic-permissions"]
    ]
    assert [(t.exchange, t.write, t.read) for t in grant.topics] == documented
    (topic,) = [t for t in grant.topics if t.exchange == f"shadowline.prod.{exchange}"]
    assert not allowed or re.match(topic.write, allowed)
    assert not re.match(topic.write, refused)


def test_every_example_in_the_asyncapi_document_is_valid() -> None:
    for name, message in asyncapi()["components"]["messages"].items():
        assert message.get("examples"), f"{name} has no example"
        headers = message.get("headers")
        for example in message["examples"]:
            assert problems(payload_file(message), example["payload"]) == [], example["name"]
            if headers is not None:
                errors = list(Draft202012Validator(headers).iter_errors(example["headers"]))
                assert errors == [], example["name"]


def test_every_operation_says_who_sends_or_receives_and_with_which_user() -> None:
    roles = set(asyncapi()["components"]["tags"])
    for name, operation in asyncapi()["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        assert {deref(t)["name"] for t in operation["tags"]} <= roles, name
        assert operation["security"], name
        messages = deref(operation["channel"])["messages"]
        for message in operation["messages"]:
            assert message["$ref"].split("/")[-1] in messages, name


def _exchange_of(operation: dict[str, Any], cluster: str) -> str:
    address: str = deref(operation["channel"])["address"]
    return address.split("/")[2].replace("{cluster}", cluster)


def _permissions(scheme: dict[str, Any], cluster: str) -> dict[str, str]:
    return {
        k: v.replace("{cluster}", re.escape(cluster))
        for k, v in scheme["x-rabbitmq-permissions"].items()
    }


def test_every_sender_may_write_and_every_receiver_may_read_its_exchange() -> None:
    refused = []
    for name, operation in asyncapi()["operations"].items():
        exchange = _exchange_of(operation, "prod")
        needed = "write" if operation["action"] == "send" else "read"
        for scheme in map(deref, operation["security"]):
            if not re.match(_permissions(scheme, "prod")[needed], exchange):
                refused.append(f"{name}: {scheme['x-rabbitmq-users']} may not {needed} {exchange}")
    assert refused == []


def test_the_documented_broker_users_are_the_ones_broker_setup_creates() -> None:
    documented = {}
    for user in (g.user for g in grants("prod")):
        scheme, instance = _scheme_of(user)
        documented[user] = {
            k: _expand(v, instance) for k, v in _permissions(scheme, "prod").items()
        }
    created = {
        g.user: {"configure": g.configure, "write": g.write, "read": g.read} for g in grants("prod")
    }
    for scheme in asyncapi()["components"]["securitySchemes"].values():
        for user in scheme["x-rabbitmq-users"]:  # each documented user is created
            assert _expand(user, "master") in created, user
    differ = [
        f"{user} {kind}: broker-setup grants {created[user][kind]!r}, "
        f"asyncapi.yaml documents {documented[user][kind]!r}"
        for user in created
        for kind in ("configure", "write", "read")
        if created[user][kind] != documented[user][kind]
    ]
    assert differ == []


def test_every_alert_the_code_raises_is_documented() -> None:
    source = "\n".join(p.read_text() for p in (REPO / "services").rglob("*.py"))
    raised = set(re.findall(r"(?<![A-Za-z])_?alert\(\s*\"([a-z-]+)\"", source))
    # domain.alerting builds its alerts as data (Alert("lag", ...)) for the monitor to raise.
    raised |= set(re.findall(r"(?<![A-Za-z])Alert\(\s*\"([a-z-]+)\"", source))
    # Call sites name alerts by domain.alerting.AlertName; each member named somewhere is raised.
    named = set(re.findall(r"AlertName\.([A-Z_]+)\b", source))
    raised |= {AlertName[member].value for member in named}
    assert raised, "no alert( call found: the scan is broken"
    channel = asyncapi()["channels"]["alert"]["parameters"]["name"]["enum"]
    assert set(channel) == set(schema("monitoring/alert.json")["properties"]["alert"]["enum"])
    assert set(AlertName) == set(channel)
    assert raised == set(channel)


def test_every_failover_step_the_watchdog_names_is_documented() -> None:
    # Every step is a member of domain.watchdog.Step: the rules return one with each sentence,
    # the watchdog says its own (maintenance, refusals) by member, and DECISION is the fallback.
    source = inspect.getsource(watchdog_service)
    assert not re.findall(r"_say\((?:.|\n)*?,\s*\"([a-z-]+)\",?\s*\)", source)
    named = {step.value for step in rules.Step}
    documented = schema("monitoring/failover.json")["properties"]["step"]["enum"]
    assert set(asyncapi()["channels"]["failover"]["parameters"]["step"]["enum"]) == set(documented)
    assert named == set(documented)


# -- fakes for the real code paths ---------------------------------------------------------------


@dataclass
class Broker:
    """Records what the code publishes, as a BrokerLink would send it."""

    cluster: str = "prod"
    ready: bool = True
    sent: list[tuple[str, str, Any, float | None]] = field(default_factory=list)

    def abandon_node(self, why: str, silent: float) -> bool:
        return False

    async def start(self) -> None:
        pass

    def quiet(self) -> float | None:
        return None

    async def answers(self, within: float) -> bool:
        return True

    async def publish_monitoring(
        self, routing_key: str, body: Any, ttl: float | None = None
    ) -> None:
        self.sent.append((f"shadowline.{self.cluster}.monitoring", routing_key, body, ttl))

    async def publish_command(self, routing_key: str, body: Any) -> None:
        self.sent.append((f"shadowline.{self.cluster}.commands", routing_key, body, None))

    def bodies(self, prefix: str) -> list[Any]:
        return [b for _, key, b, _ in self.sent if key.startswith(prefix)]

    def problems(self) -> list[str]:
        assert self.sent, "nothing was published"
        return [
            f"{key}: {p}" for ex, key, body, _ in self.sent for p in check_message(ex, key, body)
        ]


@dataclass
class Repo:
    record: HaRecord

    async def change_role(self, change: RoleChange) -> int:
        assert self.record.role in change.expect
        self.record = replace(
            self.record, role=change.role, epoch=change.epoch or self.record.epoch, **change.ha
        )
        return 0


@dataclass
class Peer:
    fork: dict[str, Any] | None = None
    refuse: bool = False
    calls: list[tuple[str, str, Any]] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Any:
        self.calls.append((method, path, body))
        if self.refuse:
            raise PeerRefused(409, "node-c is not the shadow of node-a")
        return self.fork if path == "/ha/peer/fork" else {}

    async def lines(self, path: str, params: dict[str, Any] | None = None) -> list[bytes]:
        return [
            orjson.dumps({"position": 5, "chain": "ab" * 32, "epoch": 1}),
            orjson.dumps({"sha256": "0" * 64, "digest": "0" * 64}),
        ]

    async def close(self) -> None:
        pass


@dataclass
class Store:
    chain: bytes = b"\xab" * 32
    moved: int = 0

    async def fence(self, epoch: int) -> None:
        pass

    async def set_relay_cursor(self, position: int, force: bool = False) -> None:
        pass

    async def chain_at(self, position: int) -> bytes:
        return self.chain

    async def quarantine_after(self, position: int, epoch: int) -> int:
        return self.moved


@dataclass
class Writer:
    position: int = 1042
    submitted: list[Any] = field(default_factory=list)

    async def submit(self, command: Any) -> None:
        self.submitted.append(command)

    async def exclusive(self, work: Any, **_: Any) -> Any:
        return await work()

    async def barrier(self) -> int:
        return self.position


class Ha:
    """The parts of HaService that the monitoring code reads, over a record held in memory."""

    def __init__(
        self,
        settings: Settings,
        record: HaRecord,
        gate: CommitGate,
        role: CurrentRole,
        store: Store,
    ) -> None:
        self.instance = settings.instance
        self.role = role
        self.store = store
        self.repo = Repo(record)
        self.gate = gate
        self.replicas: Running[Replicator] = Running()
        self.peer_client = Peer()
        self.position = 1042

    @property
    def record(self) -> HaRecord:
        return self.repo.record

    async def load(self, *, unfence: bool = False) -> HaRecord:
        state = self.role.state.unfenced() if unfence else self.role.state
        self.role.set(replace(state, role=Role(self.record.role), epoch=self.record.epoch))
        return self.record

    async def changed(self, sentence: str, *, unfence: bool = False) -> None:
        await self.load(unfence=unfence)

    def whoami(self) -> Whoami:
        gate = self.gate
        return Whoami(
            self.instance, self.role.state, self.record, self.position, gate.replication, gate.acked
        )

    async def commit(self, change_at: Any) -> tuple[Head, int]:
        """As HaService.commit: decided at the head, then one role change (quarantining)."""
        head = Head(self.position, self.store.chain, None)
        change, _ = change_at(head)
        await self.repo.change_role(change)
        return head, self.store.moved if change.quarantine_after is not None else 0

    def secret(self) -> str:
        return SECRET

    def peer(self, url: str, instance: str | None = None, timeout: float = 10.0) -> Peer:
        return self.peer_client

    async def status(self) -> dict[str, Any]:
        return {"shadow": {"instance": self.record.shadow_instance, "state": "connected"}}


def settings(instance: str = "node-a", **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "instance": instance,
        "cluster": "prod",
        "cluster_secret": SECRET,
        "heartbeat_interval": 0.5,
        "takeover_delay": 2.0,
        "http_bind": "127.0.0.1:8081",
    }
    return Settings(**{**values, **overrides})


def record(role: str, epoch: int = 1, **ha: Any) -> HaRecord:
    values: dict[str, Any] = {
        "role": role,
        "epoch": epoch,
        "auto_confirm": False,
        "master_instance": None,
        "master_url": None,
        "shadow_instance": None,
        "shadow_url": None,
        "shadow_state": None,
        "shadow_position": None,
        "shadow_seen_at": None,
    }
    return HaRecord(**{**values, **ha})


MASTER = record(
    "master", shadow_instance="node-b", shadow_url="http://127.0.0.1:8082", shadow_state="confirmed"
)
SHADOW = record("shadow", master_instance="node-a", master_url="http://127.0.0.1:8081")


@dataclass
class Node:
    """One instance's monitoring machinery, wired as shadowline.bootstrap wires it."""

    ha: Ha
    broker: Broker
    monitor: Monitor
    promote: PromoteCommands
    failover: Failover
    gate: CommitGate
    store: Store
    writer: Writer
    settings: Settings


async def _lease_held(within: float) -> bool:
    return True


async def _announce() -> bool:
    return True


def node(ha_record: HaRecord, instance: str = "node-a") -> Node:
    config = settings(instance)
    broker, store, writer = Broker(), Store(), Writer()
    role = CurrentRole(RoleState(Role(ha_record.role), ha_record.epoch))
    metrics = Metrics()
    monitor = Monitor(
        instance=instance,
        publisher=broker,
        counts=metrics,
        is_master=lambda: role.role == "master",
        role=lambda: role.shown,
    )
    role.watchers.append(monitor.role_changed)  # as bootstrap.py does
    gate = CommitGate(
        timeout=1.0,
        lease_valid=lambda: True,
        wait_lease=_lease_held,
        announce=_announce,
        alert=lambda name, message: monitor.alert(name, message, {}),  # as bootstrap.py does
        resolve=monitor.resolve,
    )
    ha = Ha(config, ha_record, gate, role, store)
    failover = Failover(
        settings=config,
        ha=ha,  # type: ignore[arg-type]  # the fakes stand for HaService, EventStore and Writer
        store=store,  # type: ignore[arg-type]
        writer=writer,  # type: ignore[arg-type]
        liveness=None,
        gate=gate,
        alert=monitor.alert,
        publish=monitor.publish,
    )
    promote = PromoteCommands(
        instance=instance,
        broker=broker,  # type: ignore[arg-type]  # these tests hand deliveries in themselves
        failover=failover,
        counts=metrics,
        alerts=monitor,
    )
    return Node(ha, broker, monitor, promote, failover, gate, store, writer, config)


async def settle() -> None:
    """Let the background publishing tasks run."""
    for _ in range(20):
        await asyncio.sleep(0)


# -- messages built by the real code -------------------------------------------------------------


@pytest.mark.parametrize(
    "ha_record", [MASTER, SHADOW, record("master")], ids=["master", "shadow", "alone"]
)
async def test_a_heartbeat_published_by_liveness_is_valid(ha_record: HaRecord) -> None:
    n = node(ha_record)
    liveness = Liveness(n.settings, n.broker, lambda: n.ha.whoami().heartbeat())
    assert await liveness.beat_once()
    n.gate.configure(enabled=True, acked=7)
    n.failover.role.set(n.failover.role.state.fenced_by(FenceReason.STARTING, "starting"))
    assert await liveness.beat_once()
    assert n.broker.problems() == []
    assert [ttl for *_, ttl in n.broker.sent] == [1.5, 1.5]  # max(1, 3 x interval)


@pytest.mark.parametrize("name", ["node-a", "node_b", "Node1", "node.a", "n" * 63])
def test_every_instance_name_the_settings_accept_is_one_word_of_a_routing_key(name: str) -> None:
    try:
        accepted = settings(name)
    except ValueError:
        return  # refused at start-up: never reaches a routing key
    # heartbeat.<instance> is heard through the binding heartbeat.*, promote.<instance> through
    # *.<instance>: a dot would make two words of it, and nobody would hear this instance.
    assert re.fullmatch(r"[^.#*]+", accepted.instance), (
        f"SHADOWLINE_INSTANCE={name!r} is accepted, but heartbeat.{name} does not match the "
        "binding heartbeat.* that watchdogs and instances listen with"
    )
    beat = {**schema("monitoring/heartbeat.json")["examples"][0], "instance": accepted.instance}
    assert problems("monitoring/heartbeat.json", beat) == []


def _event(position: int, kind: str | None, name: str | None, *, type_: str = "ConfigPut") -> Event:
    event = Event(
        id=uuid.uuid4(),
        position=position,
        epoch=1,
        type=type_,
        kind=kind,
        name=name,
        version=None if kind is None else 1 + position % 3,
        data={} if type_ != "ConfigDeleted" else None,
        metadata={"actor": "admin", "request_id": str(uuid.uuid4())},
        recorded_at=datetime(2024, 5, 1, 10, 2, 3, tzinfo=UTC),
    )
    return replace(event, chain=link(GENESIS, event))


async def test_config_changed_of_a_committed_batch_is_valid_and_lists_at_most_100_items() -> None:
    n = node(MASTER)
    batch = [_event(10, None, None, type_="ShadowConfirmed")]
    batch += [_event(11 + i, "system-mapping", f"m{i}") for i in range(149)]
    batch += [_event(160, "resource", "r1", type_="ConfigDeleted")]
    n.monitor.config_changed(batch[:75])
    n.monitor.config_changed(batch[75:])  # batches committed together make one summary
    await asyncio.sleep(CHANGES_EVERY + 0.1)
    await settle()
    assert n.broker.problems() == []
    (summary,) = n.broker.bodies("config.changed")
    assert (summary["count"], len(summary["changes"])) == (150, 100)
    assert (summary["from_position"], summary["to_position"]) == (10, 160)


async def test_a_shadow_applying_events_publishes_no_config_changed() -> None:
    n = node(SHADOW, "node-b")
    n.monitor.config_changed([_event(1, "subaccount", "s1")])
    await settle()
    assert n.broker.sent == []


async def test_a_master_that_fences_itself_alerts_and_announces_it_validly() -> None:
    n = node(MASTER)
    n.failover.fence(
        FenceReason.LEASE_LOST, "no heartbeat confirmed by the broker for 1.2s (lease)"
    )
    await n.failover.unfence("node-a is master in epoch 1: no newer epoch heard for 2.0s")
    await settle()
    assert n.broker.problems() == []
    assert [b["role"] for b in n.broker.bodies("role.changed")] == ["fenced", "master"]
    said = [(b["alert"], b["state"]) for b in n.broker.bodies("alert.")]
    assert said == [("fenced", "active"), ("fenced", "resolved")]


async def test_a_master_that_degrades_to_async_alerts_validly() -> None:
    n = node(MASTER)
    n.gate.configure(enabled=True, acked=0)
    n.gate.relation.mode = "sync"
    await n.gate._degrade(1043)
    await settle()
    assert n.broker.problems() == []
    assert [b["alert"] for b in n.broker.bodies("alert.")] == ["sync-degraded"]


def _command(shadow: str = "node-a", epoch: int = 2, **extra: Any) -> dict[str, Any]:
    return signing.sign(
        SECRET,
        {
            "type": "promote",
            "cluster": "prod",
            "shadow": shadow,
            "epoch": epoch,
            "previous_epoch": epoch - 1,
            "command_id": str(uuid.uuid4()),
            "issued_at": time.time(),
            "issued_by": "watchdog-1",
            "reason": "master node-b gone: ConnectError",
            **extra,
        },
    )


async def test_a_promotion_announces_the_new_master_in_the_new_epoch() -> None:
    n = node(record("shadow", master_instance="node-b", master_url="http://127.0.0.1:8082"))
    await n.failover.promote(PromoteCommand.parse(_command()), via="broker (promote.node-a)")
    await settle()
    assert n.broker.problems() == []
    (changed,) = n.broker.bodies("role.changed")
    assert (changed["role"], changed["epoch"], changed["position"]) == ("master", 2, 1042)


@dataclass
class Delivery:
    """An incoming AMQP message as the consumers read it."""

    body: bytes
    routing_key: str
    message_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    rejected: bool = False

    nacked: bool = False

    async def reject(self, requeue: bool = False) -> None:
        self.rejected = True

    async def nack(self, requeue: bool = True) -> None:
        self.nacked = True


async def test_refused_commands_alert_validly_whichever_way_they_are_refused() -> None:
    n = node(record("shadow", master_instance="node-b", master_url="http://127.0.0.1:8082"))
    await n.promote.on_command(Delivery(b"not json", "promote.node-a"))  # type: ignore[arg-type]
    n.monitor.board.quiet = 0.0  # resolved at once, so the second refusal is raised too
    n.monitor.board.expire(time.time(), time.monotonic())
    forged = {**_command(), "signature": "0" * 64}
    with pytest.raises(Forbidden):
        await n.failover.promote(PromoteCommand.parse(forged), via="broker (promote.node-a)")
    await settle()
    assert n.broker.problems() == []
    bodies = n.broker.bodies("alert.rejected-command")
    details = [b["details"] for b in bodies if b["state"] == "active"]
    assert [sorted(d) for d in details] == [["routing_key"], ["command_id", "via"]]


FORK = {
    "instance": "node-b",
    "position": 1042,
    "chain": "ab" * 32,
    "digest": "cd" * 32,
    "fork_position": 1042,
    "epoch": 2,
}


async def test_an_old_master_whose_log_diverged_alerts_validly() -> None:
    n = node(MASTER)
    n.ha.peer_client.fork = FORK
    n.store.chain = b"\x00" * 32
    with pytest.raises(Conflict):
        await n.failover.recover("http://127.0.0.1:8082", "node-b")
    await settle()
    assert n.broker.problems() == []
    assert [b["alert"] for b in n.broker.bodies("alert.")] == ["fenced", "divergence"]


async def test_an_old_master_that_quarantines_events_alerts_validly() -> None:
    n = node(MASTER)
    n.ha.peer_client.fork = FORK
    n.store.moved = 3
    await n.failover.recover("http://127.0.0.1:8082", "node-b")
    await settle()
    assert n.broker.problems() == []
    said = [(b["alert"], b["state"]) for b in n.broker.bodies("alert.")]
    # Rejoined as shadow: the old master is fenced no more.
    assert said == [("fenced", "active"), ("fenced", "resolved"), ("quarantined", "active")]


async def test_role_changed_after_rejoining_as_shadow_names_the_role_and_epoch_it_now_has() -> None:
    n = node(MASTER)
    n.ha.peer_client.fork = FORK
    await n.failover.recover("http://127.0.0.1:8082", "node-b")
    await settle()
    assert (n.ha.role.role, n.ha.role.epoch) == ("shadow", 2)
    last = n.broker.bodies("role.changed")[-1]
    assert "rejoined" in last["sentence"]
    assert (last["role"], last["epoch"]) == ("shadow", 2), last


def _replicator(n: Node, peer: Peer) -> Replicator:
    return Replicator(
        writer=n.writer,  # type: ignore[arg-type]  # the fakes stand for Writer and EventStore
        store=n.store,  # type: ignore[arg-type]
        peer=peer,
        alert=n.monitor.alert,
        secret=SECRET,
        cluster="prod",
        catalog=Catalog(load_config_schemas()),
        report_every=0.01,
    )


async def test_a_shadow_alerts_validly_on_poison_a_corrupt_image_and_a_refusal() -> None:
    n = node(SHADOW, "node-b")
    replica = _replicator(n, Peer())
    poison = Delivery(b"{}", "config.subaccount.put", message_id=str(uuid.uuid4()))
    await QueuedEvent(poison, n.monitor.alert).dead_letter("two different events claim position 77")  # type: ignore[arg-type]
    n.writer.position, replica.master_position = 0, 5
    with pytest.raises(Unavailable):
        await replica.bootstrap()
    refused = _replicator(n, Peer(refuse=True))
    reporter = asyncio.create_task(refused.run_reporter())
    await asyncio.sleep(0.05)
    reporter.cancel()
    await asyncio.gather(reporter, return_exceptions=True)
    await settle()
    assert n.broker.problems() == []
    names = {b["alert"] for b in n.broker.bodies("alert.")}
    assert names == {"dead-lettered", "corrupt-snapshot", "shadow-refused"}


async def test_switching_roles_sends_a_valid_promote_and_announces_failover_switched_validly() -> (
    None
):
    n = node(MASTER)
    n.gate.configure(enabled=True, acked=n.writer.position)
    n.ha.peer_client.fork = {**FORK, "epoch": 2}
    await n.failover.switch_roles("admin")
    await settle()
    (command,) = [body for _, path, body in n.ha.peer_client.calls if path == "/ha/peer/promote"]
    assert check_message("shadowline.prod.commands", f"promote.{command['shadow']}", command) == []
    assert command["fork_position"] == 1042
    assert n.broker.bodies("failover.switched"), "failover.switched was not published"
    assert n.broker.problems() == []


# -- the watchdog --------------------------------------------------------------------------------


def _watch(broker: Broker) -> ClusterWatch:
    watch = ClusterWatch(
        "prod",
        settings("watchdog"),
        "watchdog-1",
        allow_data_loss=False,
        link=broker,  # the publishing side is all these tests use
        probe=lambda *_: None,  # type: ignore[arg-type]  # replaced just below
    )

    async def no_probe(probe: rules.Probe) -> None:  # the probe's answer is given by each test
        pass

    watch._probe = no_probe  # type: ignore[method-assign]
    return watch


def _beat(instance: str, role: str, **fields: Any) -> dict[str, Any]:
    peer = "node-b" if instance == "node-a" else "node-a"
    return {
        "instance": instance,
        "role": role,
        "epoch": 1,
        "committed": 10,
        "replication": "sync" if role == "master" else None,
        "peer": peer,
        "peer_url": f"http://{peer}:8080",
        "url": f"http://{instance}:8080",
        "maintenance": False,
        **fields,
    }


async def _silent_master(watch: ClusterWatch, **master: Any) -> float:
    """Both heard, then the master silent past the takeover delay: the watchdog probes it."""
    watch._on_heartbeat_doc(_beat("node-a", "master", **master))
    watch._on_heartbeat_doc(_beat("node-b", "shadow"))
    now = watch.view.started + 10
    members = watch.view.members
    watch.view = replace(
        watch.view,
        members={
            "node-a": replace(members["node-a"], seen=now - 5),
            "node-b": replace(members["node-b"], seen=now),
        },
    )
    watch._apply(rules.tick(watch.view, now, 2.0))
    return now


def _steps(broker: Broker) -> list[str]:
    """The decisions published (failover.<step>), not the watchdog's announcements."""
    return [
        key.removeprefix("failover.")
        for _, key, _, _ in broker.sent
        if key.startswith("failover.") and key != "failover.watchdog"
    ]


async def test_a_watchdog_failover_publishes_valid_probing_promoting_promoted_and_a_valid_command() -> (
    None
):
    broker = Broker()
    watch = _watch(broker)
    now = await _silent_master(watch)
    watch._apply(rules.probed(watch.view, "node-a", None, "ConnectError", now, 2.0, False))
    await settle()
    watch._on_heartbeat_doc(_beat("node-b", "master", epoch=2))  # ends the failover at once
    await settle()
    assert _steps(broker) == ["probing", "promoting", "promoted"]
    assert broker.problems() == []
    (command,) = broker.bodies("promote.")
    assert command["shadow"] == "node-b" and command["epoch"] == 2


@pytest.mark.parametrize(
    ("master", "answer", "step"),
    [
        ({}, {"role": "master"}, "master-alive"),
        ({"replication": "async", "committed": 12}, None, "refused"),
    ],
    ids=["master answers its probe", "shadow lags behind acknowledged writes"],
)
async def test_a_watchdog_decision_is_published_under_the_step_it_is(
    master: dict[str, Any], answer: dict[str, Any] | None, step: str
) -> None:
    broker = Broker()
    watch = _watch(broker)
    now = await _silent_master(watch, **master)
    decision = rules.probed(watch.view, "node-a", answer, "ConnectError", now, 2.0, False)
    watch._apply(decision)
    await settle()
    assert broker.problems() == []
    assert _steps(broker) == ["probing", step], decision[2]
    assert broker.bodies("promote.") == []


async def test_a_probe_that_hangs_ends_as_no_answer_within_the_takeover_delay() -> None:
    """Whatever hangs under the prober (a resolver, a TLS handshake), the watchdog does not
    stay "probing", which would also hold every other watchdog of the cluster off."""
    broker = Broker()
    hung = asyncio.Event()

    async def hangs(
        url: str, instance: str, on_rejected: Callable[[str], None]
    ) -> tuple[dict[str, Any] | None, str]:
        hung.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    watch = ClusterWatch(
        "prod",
        settings("watchdog", takeover_delay=0.2, heartbeat_interval=0.05),
        "watchdog-1",
        allow_data_loss=False,
        link=broker,
        probe=hangs,
    )
    await _silent_master(watch)
    assert watch.view.phase == "probing"
    started = time.monotonic()
    await ClusterWatch._probe(watch, rules.Probe("node-a", "http://node-a:8080"))
    assert hung.is_set() and time.monotonic() - started < 5
    await settle()
    assert watch.view.phase != "probing", "the hung probe counts as no answer"


async def test_a_watchdog_announces_maintenance_mode_validly() -> None:
    broker = Broker()
    watch = _watch(broker)
    watch._on_heartbeat_doc(_beat("node-a", "master", maintenance=True))
    watch._on_heartbeat_doc(_beat("node-a", "master", maintenance=False))
    await settle()
    assert _steps(broker) == ["maintenance", "maintenance"]
    assert broker.problems() == []


async def test_a_shadow_hands_a_message_back_until_its_last_delivery_then_dead_letters_it_validly() -> (
    None
):
    n = node(SHADOW, "node-b")
    early = Delivery(b"{}", "config.subaccount.put", headers={"x-delivery-count": 1})
    last = Delivery(b"{}", "config.subaccount.put", headers={"x-delivery-count": 4})
    await QueuedEvent(early, n.monitor.alert).hand_back()  # type: ignore[arg-type]
    await QueuedEvent(last, n.monitor.alert).hand_back()  # type: ignore[arg-type]
    await settle()
    assert early.nacked and not early.rejected
    assert last.rejected and not last.nacked  # the broker's next return would be silent
    assert n.broker.problems() == []
    assert [b["alert"] for b in n.broker.bodies("alert.")] == ["dead-lettered"]


async def test_a_handover_whose_fork_answer_is_lost_leaves_the_master_rejoining_not_stuck() -> None:
    """The promote went through, the fork point did not come back: the old master must not stay
    'handing over' for ever (the lease watcher skips that state) but be left rejoining, which
    the lease watcher retries."""
    n = node(MASTER)
    n.gate.configure(enabled=True, acked=n.writer.position)
    real = n.ha.peer_client.call

    async def fork_lost(
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Any:
        if path == "/ha/peer/fork":
            raise Unavailable("the fork answer was lost on the way")
        return await real(method, path, body, params, auth)

    n.ha.peer_client.call = fork_lost  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        await n.failover.switch_roles("admin")
    assert n.failover.role.fenced is not None
    assert n.failover.role.fenced.startswith("rejoining node-b")


async def test_a_handover_with_no_authenticated_answer_stays_fenced_until_resolved() -> None:
    n = node(MASTER)
    n.gate.configure(enabled=True, acked=n.writer.position)

    async def unanswered(
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Any:
        raise Unavailable("answer not authenticated")  # sent; the promote may have landed

    n.ha.peer_client.call = unanswered  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        await n.failover.switch_roles("admin")
    assert n.failover.role.fenced is not None and "outcome unknown" in n.failover.role.fenced
