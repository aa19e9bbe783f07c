"""The cluster's keys and the pure rules of what is authentic and fresh (domain.keys, trust)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from shadowline.adapters.resources import load_config_schemas
from shadowline.domain import keys, trust
from shadowline.domain.alerting import Throttle
from shadowline.domain.errors import InvalidInput, Unauthenticated
from shadowline.domain.events import GENESIS, Event, link
from shadowline.domain.replication import admit
from shadowline.domain.validation import Catalog

SECRET = "unit-secret"
NOW = 1_800_000_000.0


def test_each_purpose_has_its_own_key_and_no_mac_verifies_for_another_purpose() -> None:
    derived = {purpose: keys.derive(SECRET, purpose) for purpose in keys.PURPOSES}
    assert len(set(derived.values())) == len(keys.PURPOSES)
    mac = keys.mac(SECRET, keys.HEARTBEAT, b"m")
    assert keys.valid(SECRET, keys.HEARTBEAT, b"m", mac)
    for purpose in keys.PURPOSES - {keys.HEARTBEAT}:
        assert not keys.valid(SECRET, purpose, b"m", mac)
    assert not keys.valid("another-secret", keys.HEARTBEAT, b"m", mac)
    with pytest.raises(ValueError):
        keys.derive(SECRET, "anything")


def test_length_prefixed_parts_are_unambiguous() -> None:
    assert keys.parts("ab", "c") != keys.parts("a", "bc")
    assert keys.parts(b"", "x") != keys.parts("x", b"")


def _beat(**changes: object) -> dict[str, object]:
    return {
        "instance": "node-a",
        "role": "master",
        "epoch": 1,
        "cluster": "prod",
        "seq": 5,
        "boot": "0123456789abcdef",
        "sent_at": datetime.fromtimestamp(NOW, UTC).isoformat().replace("+00:00", "Z"),
        **changes,
    }


def _check(
    body: bytes, mac: object, fresh: trust.Freshness, key: str = "heartbeat.node-a"
) -> tuple[dict[str, object] | None, str | None]:
    return trust.heartbeat_refusal(SECRET, "prod", key, body, mac, fresh, NOW)


def _signed(doc: dict[str, object], key: str = "heartbeat.node-a") -> tuple[bytes, str]:
    body = orjson.dumps(doc)
    return body, trust.message_mac(SECRET, "prod", key, body)


def test_an_authentic_fresh_heartbeat_is_admitted_once() -> None:
    fresh = trust.Freshness()
    body, mac = _signed(_beat())
    beat, refusal = _check(body, mac, fresh)
    assert refusal is None and beat is not None and beat["epoch"] == 1
    again, refusal = _check(body, mac, fresh)  # the same bytes, MAC and all, once more
    assert again is None and "replayed" in str(refusal)


@pytest.mark.parametrize(
    ("what", "body_key", "mac_key", "doc"),
    [
        ("no MAC", None, None, _beat()),
        ("MAC of another routing key", "heartbeat.node-a", "heartbeat.node-b", _beat()),
        ("routing key names another instance", "heartbeat.node-b", "heartbeat.node-b", _beat()),
        ("another cluster", "heartbeat.node-a", "heartbeat.node-a", _beat(cluster="test")),
        ("an unknown role", "heartbeat.node-a", "heartbeat.node-a", _beat(role="king")),
        ("a string epoch", "heartbeat.node-a", "heartbeat.node-a", _beat(epoch="9")),
        ("no boot", "heartbeat.node-a", "heartbeat.node-a", _beat(boot=None)),
        ("sent a minute ago", "heartbeat.node-a", "heartbeat.node-a",
         _beat(sent_at=datetime.fromtimestamp(NOW - 60, UTC).isoformat())),
        ("sent a minute ahead", "heartbeat.node-a", "heartbeat.node-a",
         _beat(sent_at=datetime.fromtimestamp(NOW + 60, UTC).isoformat())),
    ],
)  # fmt: skip
def test_a_heartbeat_that_is_forged_misrouted_malformed_or_stale_is_refused(
    what: str, body_key: str | None, mac_key: str | None, doc: dict[str, object]
) -> None:
    body = orjson.dumps(doc)
    mac = trust.message_mac(SECRET, "prod", mac_key, body) if mac_key else None
    beat, refusal = _check(body, mac, trust.Freshness(), key=body_key or "heartbeat.node-a")
    assert beat is None and refusal, what


def test_a_new_run_is_admitted_only_with_a_newer_send_time() -> None:
    fresh = trust.Freshness()
    assert fresh.refusal("a", "run1", 9, NOW, NOW) is None
    assert fresh.refusal("a", "run1", 9, NOW, NOW) is not None  # the same seq again
    assert fresh.refusal("a", "run2", 1, NOW - 1, NOW) is not None  # an older run's heartbeat
    assert fresh.refusal("a", "run2", 1, NOW + 0.5, NOW) is None  # the process restarted
    assert fresh.refusal("a", "run1", 10, NOW - 0.2, NOW) is not None  # the old run's, later


def test_freshness_remembers_a_bounded_number_of_instances() -> None:
    fresh = trust.Freshness()
    for n in range(trust.MAX_TRACKED + 10):
        assert fresh.refusal(f"i{n}", "r", 1, NOW, NOW) is None
    assert len(fresh.runs) == trust.MAX_TRACKED


def _event(**changes: Any) -> Event:
    event = Event(
        uuid.uuid4(), 1, 1, "ConfigPut", "subaccount", "s1", 1,
        {"region": "eu10", "subaccount_id": "a"}, {"actor": "t"}, datetime.now(UTC),
    )  # fmt: skip
    event = replace(event, **changes)
    event = replace(event, chain=link(GENESIS, event))
    return replace(event, signature=trust.event_signature(SECRET, "prod", event))


def test_an_event_signature_covers_its_body_and_its_chain_value() -> None:
    event = _event()
    assert trust.event_signed(SECRET, "prod", event)
    assert not trust.event_signed("other", "prod", event)
    assert not trust.event_signed(SECRET, "test", event)  # another cluster sharing the secret
    assert not trust.event_signed(SECRET, "prod", replace(event, data={"region": "us10"}))
    assert not trust.event_signed(SECRET, "prod", replace(event, chain=b"\x01" * 32))
    assert not trust.event_signed(SECRET, "prod", replace(event, signature=None))


def test_a_replicated_event_must_be_signed_in_bounds_and_valid_for_its_kind() -> None:
    catalog = Catalog(load_config_schemas())
    admit(_event(), SECRET, "prod", catalog)
    with pytest.raises(Unauthenticated):
        admit(replace(_event(), signature=None), SECRET, "prod", catalog)
    with pytest.raises(InvalidInput):
        admit(
            _event(data={"region": "eu10", "subaccount_id": "a", "extra": 1}),
            SECRET,
            "prod",
            catalog,
        )
    with pytest.raises(InvalidInput):
        admit(replace(_event(), position=2**80), SECRET, "prod", catalog)
    with pytest.raises(InvalidInput):
        admit(replace(_event(), chain=b"abc"), SECRET, "prod", catalog)


def test_the_throttle_lets_one_alert_through_per_interval_and_counts_the_rest() -> None:
    throttle = Throttle(every=10)
    assert throttle.admit("event", 0.0) == 1
    assert [throttle.admit("event", t) for t in (1.0, 2.0, 3.0)] == [None, None, None]
    assert throttle.admit("heartbeat", 3.0) == 1  # per source
    assert throttle.admit("event", 10.5) == 4


def test_a_throttle_with_a_burst_lets_that_many_through_per_interval() -> None:
    throttle = Throttle(every=10, burst=3)
    assert [throttle.admit("c", t) for t in (0.0, 1.0, 2.0, 3.0, 4.0)] == [1, 1, 1, None, None]
    assert throttle.admit("c", 10.0) == 3  # the two held back, and this one
