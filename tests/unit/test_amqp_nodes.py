"""Several RabbitMQ nodes behind one SHADOWLINE_AMQP_URL (adapters.amqp_nodes): the list, how a
node is named, the order nodes are tried in, and connecting when nodes refuse (real sockets to
closed ports: no broker is needed for a node that is not there)."""

from __future__ import annotations

import logging
import socket

import orjson
import pytest
from aio_pika import RobustConnection
from pydantic import ValidationError

from shadowline.adapters import amqp_nodes
from shadowline.adapters.amqp_nodes import Nodes, connect_robust, node_of, split_urls
from shadowline.settings import Settings


def closed_port() -> int:
    """A local port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dead_url(password: str = "pw-never-logged") -> str:
    return f"amqp://bob:{password}@127.0.0.1:{closed_port()}/"


# -- the list ------------------------------------------------------------------------------------


def test_a_comma_separated_list_gives_the_urls_in_order_without_blanks() -> None:
    assert split_urls(" amqp://u:p@h1:5672/ , ,amqp://u:p@h2/vh,") == [
        "amqp://u:p@h1:5672/",
        "amqp://u:p@h2/vh",
    ]


def test_one_url_is_a_list_of_one() -> None:
    assert split_urls("amqp://guest:guest@127.0.0.1:5672/") == [
        "amqp://guest:guest@127.0.0.1:5672/"
    ]


@pytest.mark.parametrize("urls", ["", " , ", "http://u:secret-pw@h1/", "amqp://u:p@h1/,h2:5672"])
def test_an_empty_list_or_a_non_amqp_entry_is_refused_without_quoting_a_password(
    urls: str,
) -> None:
    with pytest.raises(ValueError) as refused:
        split_urls(urls)
    assert "secret-pw" not in str(refused.value)


def test_a_node_is_named_by_host_and_port_with_the_schemes_default_port() -> None:
    assert node_of("amqp://u:secret@h1:5673/vh") == "h1:5673"
    assert node_of("amqp://u:secret@h1/") == "h1:5672"
    assert node_of("amqps://u:secret@h1/") == "h1:5671"
    assert node_of("amqp://u:secret@[::1]:5674/") == "[::1]:5674"


# -- the order -----------------------------------------------------------------------------------


def test_the_first_connection_tries_the_nodes_in_the_order_given() -> None:
    nodes = Nodes("amqp://a/,amqp://b/,amqp://c/")
    assert nodes.sweep() == ["amqp://a/", "amqp://b/", "amqp://c/"]
    assert nodes.names == ["a:5672", "b:5672", "c:5672"]


def test_after_a_node_was_connected_to_the_next_one_is_tried_first_and_it_last() -> None:
    nodes = Nodes("amqp://a/,amqp://b/,amqp://c/")
    nodes.connected("amqp://b/")
    assert nodes.sweep() == ["amqp://c/", "amqp://a/", "amqp://b/"]
    nodes.connected("amqp://c/")
    assert nodes.sweep() == ["amqp://a/", "amqp://b/", "amqp://c/"]


def test_a_single_node_is_tried_again_after_it_was_lost() -> None:
    nodes = Nodes("amqp://a/")
    nodes.connected("amqp://a/")
    assert nodes.sweep() == ["amqp://a/"]


# -- connecting when nodes refuse ----------------------------------------------------------------


async def test_a_plain_connection_names_every_node_that_refused_and_no_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = dead_url(), dead_url()
    caplog.set_level(logging.INFO, "shadowline.adapters.broker")
    with pytest.raises(ConnectionError) as refused:
        await Nodes(f"{first},{second}").connect(per_node=2)
    for url in (first, second):
        assert node_of(url) in str(refused.value)
        assert node_of(url) in caplog.text
    assert "pw-never-logged" not in str(refused.value) + caplog.text


async def test_a_robust_connection_fails_fast_when_no_node_answers_after_trying_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = dead_url(), dead_url()
    caplog.set_level(logging.INFO, "shadowline.adapters.broker")
    with pytest.raises(ConnectionError):
        await connect_robust(f"{first},{second}", "test", per_node=2)
    refusals = [r.getMessage() for r in caplog.records if "did not answer" in r.getMessage()]
    assert [node_of(first) in r for r in refusals] == [True, False]
    assert [node_of(second) in r for r in refusals] == [False, True]
    assert "pw-never-logged" not in caplog.text


def test_the_aio_pika_hook_the_node_connection_overrides_still_exists() -> None:
    # NodeConnection rotates the URL in RobustConnection's private attempt: a release that
    # renamed it would silently connect to the first node only.
    assert callable(getattr(RobustConnection, "_RobustConnection__connect_transport", None))
    assert "_RobustConnection__connect_transport" in vars(amqp_nodes.NodeConnection)


# -- the settings --------------------------------------------------------------------------------


def test_settings_mask_the_password_of_every_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SHADOWLINE_AMQP_URL", "amqp://bob:pw-one@h1:5672/vh, amqp://bob:pw-two@h2:5673/vh"
    )
    shown = Settings().masked()
    text = orjson.dumps(shown, default=str).decode()
    assert "pw-one" not in text and "pw-two" not in text
    assert shown["amqp_url"] == "amqp://bob:***@h1:5672/vh,amqp://bob:***@h2:5673/vh"


@pytest.mark.parametrize("urls", ["", "amqp://bob:pw-three@h1/,postgresql://bob:pw-three@h2/"])
def test_settings_refuse_an_amqp_url_list_with_no_or_a_wrong_entry(
    monkeypatch: pytest.MonkeyPatch, urls: str
) -> None:
    monkeypatch.setenv("SHADOWLINE_AMQP_URL", urls)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "pw-three" not in str(refused.value)


def test_each_node_gets_a_third_of_the_lease_to_answer_at_most_two_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHADOWLINE_TAKEOVER_DELAY", "2")
    monkeypatch.setenv("SHADOWLINE_HEARTBEAT_INTERVAL", "0.5")
    assert Settings().broker_connect_timeout == pytest.approx(0.4)  # lease 1.2 s
    monkeypatch.setenv("SHADOWLINE_TAKEOVER_DELAY", "30")
    assert Settings().broker_connect_timeout == 2.0
