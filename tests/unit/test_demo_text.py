"""What the demo prints when a port is busy and when the master has changed."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from shadowline.cli import demo_text
from shadowline.cli.demo_state import footprint
from shadowline.harness import free_port


@dataclass
class Node:
    name: str
    url: str
    pid: int | None


def test_a_busy_port_is_named_with_the_one_used_instead() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        wanted = busy.getsockname()[1]
        got = free_port(wanted)
        assert got != wanted
        note = demo_text.port_note(wanted, got, "node-a")
    assert note == f"port {wanted} is busy: node-a uses {got} instead (choose another with --port)"
    assert demo_text.port_note(got, got, "node-a") is None


def test_after_a_failover_the_demo_names_the_master_of_now_its_url_and_its_kill_line() -> None:
    master = Node("node-b", "http://127.0.0.1:8081", 4242)
    shadow = Node("node-a", "http://127.0.0.1:8080", None)
    text = demo_text.new_master(master, shadow, 2, "pw", "http://127.0.0.1:8090")
    assert text.splitlines() == [
        "now master: node-b at http://127.0.0.1:8081 (epoch 2)",
        "  shadow: node-a at http://127.0.0.1:8080",
        "  export SHADOWLINE_URL=http://127.0.0.1:8081,http://127.0.0.1:8080"
        " SHADOWLINE_USER=admin SHADOWLINE_PASSWORD=pw",
        "  kill -9 4242   # to kill the master of now",
        "  curl -u admin:pw http://127.0.0.1:8081/ha",
        "  curl -u admin:pw http://127.0.0.1:8081/metrics    # Prometheus; the watchdog's: "
        "http://127.0.0.1:8090/metrics",
    ]


def test_the_banner_lists_the_commands_in_the_tour_order() -> None:
    node = Node("node-a", "http://127.0.0.1:8080", 7)
    text = demo_text.banner(
        cluster="demo", log_dir="/x", master=node, shadow=node, watchdog_url="http://w",
        password="pw", position=4,
    )  # fmt: skip
    order = ["shadowline watch", "config put", "kill -9 7", "shadowline history", "switch-roles"]
    assert [text.index(step) for step in order] == sorted(text.index(step) for step in order)
    assert "shadowline demo --clean --cluster demo" in text
    assert "\n  curl -u admin:pw http://127.0.0.1:8080/ha\n  curl -u admin:pw " in text


def test_each_demo_cluster_has_its_own_log_folder_and_role_neutral_databases(
    tmp_path: Path,
) -> None:
    one, two = footprint("demo", tmp_path), footprint("try-2", tmp_path)
    assert (one.log_dir, two.log_dir) == (tmp_path / "demo", tmp_path / "try-2")
    assert [u.rsplit("/", 1)[1] for u in two.database_urls.values()] == [
        "shadowline_try_2_node_a", "shadowline_try_2_node_b",
    ]  # fmt: skip
