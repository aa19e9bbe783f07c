"""A private 3-node RabbitMQ cluster, for the tests and benchmarks that take broker nodes away
(issue 11, and `shadowline bench chaos`).

Each node is a harness.rabbit RabbitNode of its own (name, AMQP and distribution ports, data,
log and config), all with the same Erlang cookie and `cluster_partition_handling =
pause_minority`, the setting the README recommends. The three start side by side (an Erlang
start is the slow part), then the second and third join the first as an operator does it:
`rabbitmqctl stop_app`, `join_cluster`, `start_app`. The shared broker on 5672 is never touched.

`net_ticktime` is 5 s instead of 60, so that the others see a paused (SIGSTOP) node as gone, a
partition, within seconds; a killed node they see at once (its connections close).

Give processes `cluster.urls(first)` as SHADOWLINE_AMQP_URL; `heal` brings back whatever was
killed, stopped or paused. The tests' pytest fixtures are in tests/e2e/rabbit_cluster.py.
"""

from __future__ import annotations

import re
import secrets
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from shadowline.harness.processes import wait_for
from shadowline.harness.rabbit import RabbitNode

NODES = 3
TICKTIME = 5  # seconds: the others see a silent node as down after 4 to 6 of them
CONFIG = f"cluster_partition_handling = pause_minority\nnet_ticktime = {TICKTIME}\n"


class RabbitCluster:
    """Three RabbitNodes in `base`, clustered; `urls` is the comma-separated list for
    SHADOWLINE_AMQP_URL (node 0 first)."""

    def __init__(self, base: Path) -> None:
        cookie = secrets.token_hex(16)
        self.nodes = [
            RabbitNode(base / f"node{i}", cookie=cookie, config=CONFIG) for i in range(NODES)
        ]
        self.started_in = 0.0  # seconds the cluster took to start and join
        self.disturbed: set[RabbitNode] = set()  # killed, stopped or paused since the last heal

    def urls(self, first: int = 0) -> str:
        """Every node's URL, beginning with node `first` (then the others in turn)."""
        order = self.nodes[first:] + self.nodes[:first]
        return ",".join(node.url for node in order)

    def start(self, timeout: float = 120) -> None:
        begun = time.monotonic()
        for node in self.nodes:
            node.launch()
        with ThreadPoolExecutor(NODES) as pool:
            list(pool.map(lambda node: node.wait_ready(timeout), self.nodes))
        seed = self.nodes[0]
        for node in self.nodes[1:]:  # one at a time: concurrent joins race on the schema
            node.ctl("stop_app")
            node.ctl("join_cluster", seed.name)
            node.ctl("start_app")
        self.wait_clustered(timeout)
        self.started_in = time.monotonic() - begun

    def stop(self) -> None:
        """Kill every node (its data goes with the test's temporary directory)."""
        for node in self.nodes:
            if node.running:
                node.signal(signal.SIGKILL)

    # -- what a test does to a node ---------------------------------------------------------------

    def kill(self, node: RabbitNode) -> None:
        """kill -9 of the node's processes: its connections drop at once."""
        self.disturbed.add(node)
        node.signal(signal.SIGKILL)

    def restart(self, node: RabbitNode, timeout: float = 90) -> None:
        """Start a killed node again on its ports and data; it rejoins the cluster by itself."""
        node.start(timeout)

    def stop_app(self, node: RabbitNode) -> None:
        self.disturbed.add(node)
        node.ctl("stop_app")

    def start_app(self, node: RabbitNode) -> None:
        """`rabbitmqctl start_app`, until the node takes AMQP connections again."""
        node.ctl("start_app")
        node.wait_ready()
        self.disturbed.discard(node)

    def pause(self, node: RabbitNode) -> None:
        """SIGSTOP: the node holds its connections open but says nothing, to clients and to the
        other nodes alike, which is what a network partition looks like to both."""
        self.disturbed.add(node)
        node.signal(signal.SIGSTOP)

    def resume(self, node: RabbitNode, timeout: float = 90) -> bool:
        """SIGCONT, then the cluster whole again; True when RabbitMQ healed it by itself."""
        node.signal(signal.SIGCONT)
        healed = self._rejoin(node, timeout)
        self.wait_clustered(timeout)
        self.disturbed.discard(node)
        return healed

    def _rejoin(self, node: RabbitNode, timeout: float) -> bool:
        """Until the running `node` is back in the cluster; True when it came back by itself.

        A node paused while the others declared it gone never saw itself in a minority, so
        pause_minority did not stop it: once resumed it may record the partition and stay apart
        (it lists only itself running, and still takes clients). RabbitMQ leaves that to the
        operator, whose remedy is to restart the app of the node that was cut off: done here."""
        every = {n.name for n in self.nodes}

        def settled() -> str | None:
            doc = orjson.loads(node.ctl("cluster_status", "--formatter", "json", timeout=20))
            if doc.get("partitions"):
                return "partitioned"
            return "healed" if set(doc.get("running_nodes", [])) == every else None

        outcome = wait_for(settled, timeout, f"{node.name} to rejoin or record the partition",
                           every=0.5, tolerate=(RuntimeError,))  # fmt: skip
        if outcome == "partitioned":
            node.ctl("stop_app")
            self.start_app(node)
        return outcome == "healed"

    # -- what a test reads --------------------------------------------------------------------------

    def others(self, node: RabbitNode) -> list[RabbitNode]:
        return [n for n in self.nodes if n is not node]

    def running_nodes(self, asked: RabbitNode) -> set[str]:
        """The nodes `asked` sees running in the cluster, from what it knows itself (`rabbitmqctl
        cluster_status` asks every node, so it hangs on a paused one)."""
        said = asked.ctl("eval", "rabbit_nodes:all_running().", timeout=20)
        return set(re.findall(r"'([^']+@[^']+)'", said))

    def wait_clustered(self, timeout: float = 90, without: RabbitNode | None = None) -> None:
        """Until every node (but `without`) sees exactly the others (but `without`) running."""
        expected = {n.name for n in self.nodes if n is not without}

        def clustered() -> bool:
            return all(self.running_nodes(n) == expected for n in self.nodes if n is not without)

        wait_for(
            clustered,
            timeout,
            f"the nodes {sorted(expected)} clustered",
            every=0.5,
            tolerate=(RuntimeError,),
        )

    def node_at(self, address: str) -> RabbitNode:
        """The node listening at `address` (host:port, as the product names a node)."""
        (found,) = [n for n in self.nodes if address.endswith(f":{n.port}")]
        return found

    def node_of(self, connection_name: str, asked: RabbitNode | None = None) -> RabbitNode:
        """The node the one open connection named `connection_name` is on (by the port it
        connected to), as a running node sees it."""
        ports = {n.port: n for n in self.nodes}
        found = [
            ports[c["port"]]
            for c in self.connections(asked)
            if (c.get("client_properties") or {}).get("connection_name") == connection_name
        ]
        assert len(found) == 1, f"{len(found)} connections named {connection_name!r}: {found}"
        return found[0]

    def connections(self, asked: RabbitNode | None = None) -> list[dict[str, Any]]:
        """Every client connection of the cluster, as `asked` (default: a running node) lists
        them: name, port (the node's), client_properties."""
        asked = asked or next(n for n in self.nodes if n.running)
        out = asked.ctl(
            "list_connections", "port", "client_properties", "--formatter", "json", timeout=20
        )
        found = orjson.loads(out)
        for connection in found:
            properties = connection.get("client_properties")
            if isinstance(properties, list):  # [[key, type, value], ...] in 3.10's JSON
                connection["client_properties"] = {p[0]: p[-1] for p in properties}
        return list(found)

    def queues(self, asked: RabbitNode | None = None) -> dict[str, dict[str, Any]]:
        """Every queue by name: type, members, online (the running members), leader."""
        asked = asked or next(n for n in self.nodes if n.running)
        out = asked.ctl(
            "list_queues", "name", "type", "members", "online", "leader",
            "--formatter", "json", timeout=30,
        )  # fmt: skip
        return {q["name"]: q for q in orjson.loads(out)}

    def heal(self, timeout: float = 90) -> None:
        """Every node running, resumed and clustered again, whatever a test did to them."""
        disturbed = self.disturbed | {n for n in self.nodes if not n.running}
        if not disturbed:
            return
        alive = [node for node in disturbed if node.running]  # paused or its app stopped
        for node in disturbed:
            if node.running:
                node.signal(signal.SIGCONT)
            else:
                node.launch()
        for node in alive:
            node.ctl("start_app", timeout=timeout)  # a no-op on a running app
        for node in disturbed:
            node.wait_ready(timeout)
        for node in alive:
            self._rejoin(node, timeout)
        self.wait_clustered(timeout)
        self.disturbed.clear()
