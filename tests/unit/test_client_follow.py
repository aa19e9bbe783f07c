"""The client given several instances (client.follow): writes and HA actions find the writable
master and follow it; a write whose outcome is unknown is checked by its request id and its
item's version, never sent twice blindly. The instances here are a small model behind
httpx.MockTransport: what the plans send and how they read answers, not the server."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from shadowline.client import Client
from shadowline.client.follow import Instances
from shadowline.client.types import ClientError


@dataclass
class Node:
    role: str  # "master", "shadow", "down" or "busy" (503 to everything but its probes)
    # the next writes' failures: "before" (lost, not applied), "after" (applied, answer lost)
    fail_next: list[str] = field(default_factory=list)
    stale: bool = False  # its /master still says master, its actions refuse (mid-handover)


@dataclass
class Cluster:
    """Two instances sharing one log (replication is not what is tested here)."""

    nodes: dict[str, Node]
    items: dict[str, tuple[Any, int]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # host, method, path

    def handle(self, request: httpx.Request) -> httpx.Response:
        host, path, method = request.url.host, request.url.path, request.method
        node = self.nodes[host]
        self.seen.append((host, method, path))
        if node.role == "down":
            raise httpx.ConnectError("refused", request=request)
        if node.role == "busy":  # a master that cannot vouch for what it would show now
            return httpx.Response(
                503, json={"error": "busy", "master": None}, headers={"Retry-After": "1"}
            )
        if path == "/shadow":
            return httpx.Response(200 if node.role == "shadow" else 503, json={})
        if path == "/master":
            return httpx.Response(200 if node.role == "master" or node.stale else 503, json={})
        if path.startswith("/config/"):
            return self._config(request, host, node)
        if path == "/events":
            after, limit = int(request.url.params["after"]), int(request.url.params["limit"])
            found = [
                e
                for e in self.events
                if e["name"] == request.url.params["name"] and e["position"] > after
            ]
            return httpx.Response(200, content=b"\n".join(orjson.dumps(e) for e in found[:limit]))
        if path == "/ha/switch-roles":
            if node.role != "master":
                return httpx.Response(409, json={"error": "on the master", "master": "http://b"})
            failure = node.fail_next.pop(0) if node.fail_next else None
            if failure == "after":
                raise httpx.ReadError("lost", request=request)
            if failure == "unavailable":  # done, then the database failed: outcome unknown
                headers = {"Retry-After": "1"}
                return httpx.Response(503, json={"error": "db", "master": None}, headers=headers)
            return httpx.Response(200, json={"switched": True})
        return httpx.Response(200, json={"instance": host})

    def _config(self, request: httpx.Request, host: str, node: Node) -> httpx.Response:
        key = request.url.path.removeprefix("/config/")
        current = self.items.get(key)
        if request.method == "GET":
            if current is None:
                return httpx.Response(404, json={"error": "not found"})
            return httpx.Response(200, json={"value": current[0], "version": current[1]})
        if node.role != "master" and not key.startswith("log-level/"):
            return httpx.Response(503, json={"error": "a shadow", "master": None})
        failure = node.fail_next.pop(0) if node.fail_next else None
        if failure == "before":
            raise httpx.ReadError("lost before it was applied", request=request)
        match = request.headers.get("If-Match")
        if match is not None and (current is None or match != f'"{current[1]}"'):
            return httpx.Response(409, json={"error": "conflict"})
        if request.headers.get("If-None-Match") == "*" and current is not None:
            return httpx.Response(412, json={"error": "exists", "version": current[1]})
        version = (current[1] if current else 0) + 1
        self.items[key] = (orjson.loads(request.content), version)
        kind, name = key.split("/")
        event = {
            "kind": kind,
            "name": name,
            "version": version,
            "position": len(self.events) + 1,
            "epoch": 1,
            "metadata": {"request_id": request.headers.get("X-Request-Id")},
        }
        self.events.append(event)
        if failure == "after":
            raise httpx.ReadError("applied, then the answer was lost", request=request)
        if failure == "504":  # a proxy in front gave up after the master had written
            return httpx.Response(504, text="gateway timeout")
        return httpx.Response(
            200, json={k: event[k] for k in ("kind", "name", "version", "position", "epoch")}
        )


def client_of(cluster: Cluster, patience: float = 2.0) -> Client:
    urls = ",".join(f"http://{host}" for host in cluster.nodes)
    return Client(
        urls, "admin", "pw", transport=httpx.MockTransport(cluster.handle), patience=patience
    )


def writes(cluster: Cluster) -> list[tuple[str, str]]:
    return [(h, p) for h, m, p in cluster.seen if m in ("PUT", "DELETE")]


def test_a_write_goes_to_the_instance_that_is_master_whichever_url_comes_first() -> None:
    cluster = Cluster({"a": Node("shadow"), "b": Node("master")})
    written = client_of(cluster).put("system-mapping", "erp", {"v": 1})
    assert written["version"] == 1
    assert writes(cluster) == [("b", "/config/system-mapping/erp")]


def test_after_a_failover_the_next_write_finds_the_new_master() -> None:
    cluster = Cluster({"a": Node("master"), "b": Node("shadow")})
    client = client_of(cluster)
    client.put("system-mapping", "erp", {"v": 1})
    cluster.nodes["a"].role, cluster.nodes["b"].role = "down", "master"
    assert client.put("system-mapping", "erp", {"v": 2})["version"] == 2
    assert [h for h, _ in writes(cluster)] == ["a", "b"]


def test_a_write_applied_whose_answer_was_lost_is_found_by_its_request_id_not_sent_again() -> None:
    cluster = Cluster({"a": Node("master", ["after"]), "b": Node("shadow")})
    written = client_of(cluster).put("system-mapping", "erp", {"v": 1})
    assert written == {
        "kind": "system-mapping",
        "name": "erp",
        "version": 1,
        "position": 1,
        "epoch": 1,
    }
    assert len(writes(cluster)) == 1 and len(cluster.events) == 1


def test_a_write_lost_before_it_was_applied_is_sent_again_guarded_by_the_version_read() -> None:
    cluster = Cluster({"a": Node("master", ["before"]), "b": Node("shadow")})
    cluster.items["system-mapping/erp"] = ({"v": 0}, 4)
    written = client_of(cluster).put("system-mapping", "erp", {"v": 1})
    assert written["version"] == 5 and len(cluster.events) == 1
    assert cluster.items["system-mapping/erp"] == ({"v": 1}, 5)


def test_a_callers_own_version_guard_is_kept_when_a_write_is_sent_again() -> None:
    cluster = Cluster({"a": Node("master", ["before"]), "b": Node("shadow")})
    cluster.items["system-mapping/erp"] = ({"v": 0}, 4)
    with pytest.raises(ClientError) as refused:
        client_of(cluster).put("system-mapping", "erp", {"v": 1}, if_match=3)
    assert refused.value.status == 409 and cluster.events == []


def test_a_delete_whose_item_is_gone_and_not_by_it_answers_404() -> None:
    cluster = Cluster({"a": Node("master", ["before"]), "b": Node("shadow")})
    with pytest.raises(ClientError) as refused:
        client_of(cluster).delete("system-mapping", "erp")
    assert refused.value.status == 404


def test_a_local_kind_is_written_on_the_first_instance_named_whatever_its_role() -> None:
    cluster = Cluster({"a": Node("shadow"), "b": Node("master")})
    client_of(cluster).put("log-level", "root", {"level": "DEBUG"})
    assert writes(cluster) == [("a", "/config/log-level/root")]


def test_switch_roles_refused_by_a_shadow_goes_to_the_master_and_is_never_sent_twice() -> None:
    cluster = Cluster({"a": Node("shadow", stale=True), "b": Node("master", ["after"])})
    with pytest.raises(httpx.ReadError):  # the outcome is unknown: the caller is told so
        client_of(cluster).ha_switch_roles()
    assert [h for h, m, p in cluster.seen if p == "/ha/switch-roles"] == ["a", "b"]


def test_with_no_master_a_write_waits_its_patience_then_says_so() -> None:
    cluster = Cluster({"a": Node("shadow"), "b": Node("down")})
    with pytest.raises(ClientError) as refused:
        client_of(cluster, patience=0.3).put("system-mapping", "erp", {"v": 1})
    assert refused.value.status == 503 and "no writable master" in str(refused.value)
    assert writes(cluster) == []


def test_reads_go_to_the_first_instance_that_answers() -> None:
    cluster = Cluster({"a": Node("down"), "b": Node("shadow")})
    assert client_of(cluster).health()["instance"] == "b"


def test_a_read_answered_503_goes_to_the_next_instance_and_the_last_503_is_told() -> None:
    cluster = Cluster({"a": Node("busy"), "b": Node("shadow")})
    client = client_of(cluster)
    assert client.health()["instance"] == "b"
    cluster.nodes["a"].role = "master"  # a 503 passes: the reader chosen stays the reader
    assert client.health()["instance"] == "a"
    alone = Cluster({"a": Node("busy"), "b": Node("busy")})
    with pytest.raises(ClientError, match="503"):
        client_of(alone).health()


def test_a_tls_context_is_made_only_when_an_instance_is_reached_over_https() -> None:
    assert Instances("http://a:8080,http://b:8080").tls is False
    assert Instances("http://a:8080,HTTPS://b:8443").tls is True
    secure = Client("https://a:8443", "admin", "pw")
    assert secure._http._transport._pool._ssl_context.verify_mode == ssl.CERT_REQUIRED  # type: ignore[attr-defined]


def test_reads_prefer_the_in_sync_shadow_or_the_master_when_asked() -> None:
    cluster = Cluster({"a": Node("master"), "b": Node("shadow")})
    transport = httpx.MockTransport(cluster.handle)
    spare = Client("http://a,http://b", "admin", "pw", transport=transport, prefer="shadow")
    assert spare.health()["instance"] == "b"
    own = Client("http://b,http://a", "admin", "pw", transport=transport, prefer="master")
    assert own.health()["instance"] == "a"
    with pytest.raises(ValueError, match="prefer must be one of"):
        Client("http://a,http://b", "admin", "pw", prefer="nearest")


def test_a_write_found_among_more_than_a_page_of_its_items_events_is_not_sent_again() -> None:
    cluster = Cluster({"a": Node("master", ["after"]), "b": Node("shadow")})
    for n in range(2500):  # an item written often: its events fill more than two pages
        cluster.events.append(
            {
                "kind": "system-mapping",
                "name": "erp",
                "version": n + 1,
                "position": n + 1,
                "epoch": 1,
                "metadata": {"request_id": f"other-{n}"},
            }
        )
    cluster.items["system-mapping/erp"] = ({"v": 0}, 2500)
    written = client_of(cluster).put("system-mapping", "erp", {"v": 1})
    assert written["version"] == 2501 and len(cluster.events) == 2501


def test_a_write_a_proxy_answered_504_after_it_was_done_is_checked_not_reported_failed() -> None:
    cluster = Cluster({"a": Node("master", ["504"]), "b": Node("shadow")})
    written = client_of(cluster).put("system-mapping", "erp", {"v": 1})
    assert written["version"] == 1 and len(cluster.events) == 1


def test_switch_roles_answered_unavailable_is_reported_not_sent_again() -> None:
    cluster = Cluster({"a": Node("master", ["unavailable"]), "b": Node("shadow")})
    with pytest.raises(ClientError) as unknown:
        client_of(cluster).ha_switch_roles()
    assert unknown.value.status == 503
    assert [h for h, m, p in cluster.seen if p == "/ha/switch-roles"] == ["a"]
