"""What a shadow accepts from its master, the HA status rules and the cluster signature."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from shadowline.adapters import peer
from shadowline.domain.commands import ItemVersion
from shadowline.domain.errors import Divergence, Forbidden, Gap
from shadowline.domain.events import GENESIS, Event, link
from shadowline.domain.ha import handshake_problem, shadow_state
from shadowline.domain.replication import check_replicated

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def chained(specs: list[tuple[Any, ...]], start: int = 0, previous: bytes = GENESIS) -> list[Event]:
    events = []
    for offset, (type_, kind, name, version, data, epoch) in enumerate(specs, start=1):
        event = Event(
            uuid4(), start + offset, epoch, type_, kind, name, version, data, {"actor": "a"}, NOW
        )
        previous = link(previous, event)
        events.append(replace(event, chain=previous))
    return events


PUT = ("ConfigPut", "subaccount", "acme", 1, {"region": "eu", "subaccount_id": "1"}, 1)


def test_a_shadow_accepts_events_that_extend_its_log_exactly() -> None:
    events = chained(
        [PUT, ("ConfigPut", "subaccount", "acme", 2, {"region": "us", "subaccount_id": "1"}, 1)]
    )
    assert check_replicated(0, GENESIS, 1, {}, events) == {
        ("subaccount", "acme"): ItemVersion(2, True)
    }


def test_a_shadow_refuses_a_gap_before_the_first_event() -> None:
    events = chained([PUT], start=1)
    with pytest.raises(Gap) as refused:
        check_replicated(0, GENESIS, 1, {}, events)
    assert (refused.value.expected, refused.value.got) == (1, 2)


def test_a_shadow_refuses_a_tampered_event_by_its_chain_value() -> None:
    [event] = chained([PUT])
    with pytest.raises(Divergence, match="chain"):
        check_replicated(
            0, GENESIS, 1, {}, [replace(event, data={"region": "xx", "subaccount_id": "1"})]
        )


def test_a_shadow_refuses_events_from_an_older_epoch() -> None:
    first = chained([(*PUT[:5], 2)])
    second = chained(
        [("ConfigPut", "subaccount", "acme", 2, PUT[4], 1)], start=1, previous=first[0].chain
    )
    with pytest.raises(Divergence, match="epoch 1 is older than 2"):
        check_replicated(0, GENESIS, 0, {}, first + second)


def test_a_shadow_refuses_a_local_only_kind_even_with_a_valid_chain() -> None:
    events = chained([("ConfigPut", "log-level", "root", 1, {"level": "DEBUG"}, 1)])
    with pytest.raises(Divergence, match="local-only"):
        check_replicated(0, GENESIS, 1, {}, events)


def test_a_shadow_refuses_a_version_that_skips_or_a_delete_of_nothing() -> None:
    with pytest.raises(Divergence, match="version 3"):
        check_replicated(0, GENESIS, 1, {}, chained([("ConfigPut", "subaccount", "a", 3, {}, 1)]))
    with pytest.raises(Divergence, match="does not exist"):
        check_replicated(
            0, GENESIS, 1, {}, chained([("ConfigDeleted", "subaccount", "a", 1, None, 1)])
        )


def test_shadow_state_is_pending_until_confirmed_then_follows_position_and_contact() -> None:
    assert shadow_state("pending", None, 0.1, 10, 5) == "pending"
    assert shadow_state("confirmed", 10, 0.1, 10, 5) == "connected"
    assert shadow_state("confirmed", 7, 0.1, 10, 5) == "syncing"
    assert shadow_state("confirmed", 10, 6.0, 10, 5) == "lost"
    assert shadow_state("confirmed", None, None, 0, 5) == "lost"


def test_the_join_handshake_names_both_versions_on_a_mismatch() -> None:
    assert handshake_problem("1.0", "0002", "1.0", "0002") is None
    problem = handshake_problem("1.0", "0002", "1.1", "0003")
    assert (
        problem is not None
        and "1.0" in problem
        and "1.1" in problem
        and "0002" in problem
        and "0003" in problem
    )


def test_a_cluster_signature_binds_secret_cluster_path_body_caller_and_time() -> None:
    body = b'{"position":1}'
    headers = peer.sign("s3cret", "prod", "shadow", "POST", "/ha/peer/ack", body)
    assert peer.verify("s3cret", "prod", headers, "POST", "/ha/peer/ack", body) == "shadow"
    for secret, cluster, path, changed in (
        ("other", "prod", "/ha/peer/ack", body),
        ("s3cret", "test", "/ha/peer/ack", body),  # another cluster sharing the secret
        ("s3cret", "prod", "/ha/peer/register", body),
        ("s3cret", "prod", "/ha/peer/ack", b'{"position":2}'),
    ):
        with pytest.raises(Forbidden):
            peer.verify(secret, cluster, headers, "POST", path, changed)
    with pytest.raises(Forbidden):  # another caller's name on the same signature
        peer.verify("s3cret", "prod", {**headers, peer.INSTANCE_HEADER: "evil"}, "POST",
                    "/ha/peer/ack", body)  # fmt: skip
    stamped = float(headers[peer.TIME_HEADER])
    with pytest.raises(Forbidden, match="old"):
        peer.verify("s3cret", "prod", headers, "POST", "/ha/peer/ack", body, now=stamped + 31)
    with pytest.raises(Forbidden, match="without"):
        peer.verify("s3cret", "prod", {}, "GET", "/", b"")
    with pytest.raises(Forbidden, match="SHADOWLINE_CLUSTER_SECRET"):
        peer.verify(None, "prod", headers, "POST", "/ha/peer/ack", body)


def test_a_nonce_is_accepted_once_and_the_cache_stays_bounded() -> None:
    nonces = peer.Nonces(limit=10)
    assert nonces.fresh("a", 0.0) and not nonces.fresh("a", 1.0)
    for n in range(20):  # old ones are pruned: their requests are refused by time anyway
        assert nonces.fresh(f"old{n}", 1000.0 + 100 * n)
    assert len(nonces._seen) <= 10
    recent = [nonces.fresh(f"new{n}", 5000.0) for n in range(20)]
    assert not all(recent)  # full of nonces still in the window: refused, never forgotten
    assert len(nonces._seen) <= 10
