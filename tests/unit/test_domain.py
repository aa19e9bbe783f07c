"""The pure domain: decisions, the fold, digests, diffs, the hash chain and validation. No I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowline.adapters.resources import load_config_schemas
from shadowline.domain.commands import DeleteItem, ItemVersion, PutItem, decide
from shadowline.domain.errors import InvalidInput, NotFound, VersionConflict
from shadowline.domain.events import (
    CONFIG_DELETED,
    CONFIG_PUT,
    GENESIS,
    Event,
    envelope,
    from_envelope,
    link,
    verify_chain,
)
from shadowline.domain.kinds import ALL_KINDS
from shadowline.domain.state import apply, diff, digest, fold
from shadowline.domain.validation import Catalog

T0 = datetime(2026, 11, 25, 10, 2, 3, 456789, tzinfo=UTC)


def event(
    position: int,
    type_: str = CONFIG_PUT,
    name: str = "acme",
    data: Any = None,
    *,
    kind: str = "subaccount",
    version: int = 1,
) -> Event:
    return Event(
        id=UUID(int=position),
        position=position,
        epoch=1,
        type=type_,
        kind=kind,
        name=name,
        version=version,
        data=data,
        metadata={"actor": "admin", "request_id": f"r{position}"},
        recorded_at=T0 + timedelta(seconds=position),
    )


def chained(events: list[Event]) -> list[Event]:
    """The events with their chain values filled in, as the writer stores them."""
    previous, result = GENESIS, []
    for e in events:
        previous = link(previous, e)
        result.append(replace(e, chain=previous))
    return result


def history() -> list[Event]:
    return chained(
        [
            event(1, data={"region": "eu10", "subaccount_id": "a"}),
            event(2, name="beta", data={"region": "us10", "subaccount_id": "b"}),
            event(3, data={"region": "eu20", "subaccount_id": "a"}, version=2),
            event(4, CONFIG_DELETED, name="beta", version=2),
        ]
    )


# -- decide ------------------------------------------------------------------------------------


def test_a_put_of_a_new_item_creates_version_one() -> None:
    decision = decide(PutItem("subaccount", "acme", {}), None)
    assert (decision.type, decision.version, decision.created) == (CONFIG_PUT, 1, True)


def test_a_put_of_a_live_item_updates_it_to_the_next_version() -> None:
    decision = decide(PutItem("subaccount", "acme", {}), ItemVersion(3, live=True))
    assert (decision.type, decision.version, decision.created) == (CONFIG_PUT, 4, False)


def test_a_delete_of_a_live_item_records_the_next_version() -> None:
    decision = decide(DeleteItem("subaccount", "acme"), ItemVersion(3, live=True))
    assert (decision.type, decision.version, decision.created) == (CONFIG_DELETED, 4, False)


def test_if_match_naming_the_current_version_is_accepted_for_put_and_delete() -> None:
    current = ItemVersion(2, live=True)
    assert decide(PutItem("subaccount", "acme", {}, expected_version=2), current).version == 3
    assert decide(DeleteItem("subaccount", "acme", expected_version=2), current).version == 3


@pytest.mark.parametrize(
    "command",
    [
        PutItem("subaccount", "acme", {}, expected_version=1),
        DeleteItem("subaccount", "acme", expected_version=3),
    ],
)
def test_if_match_naming_another_version_is_a_version_conflict(command: Any) -> None:
    with pytest.raises(VersionConflict) as refused:
        decide(command, ItemVersion(2, live=True))
    assert (refused.value.key, refused.value.expected, refused.value.actual) == (
        "subaccount/acme",
        command.expected_version,
        2,
    )


def test_if_match_on_a_missing_item_is_a_version_conflict_with_no_current_version() -> None:
    with pytest.raises(VersionConflict) as refused:
        decide(PutItem("subaccount", "acme", {}, expected_version=1), None)
    assert refused.value.actual is None


@pytest.mark.parametrize("current", [None, ItemVersion(2, live=False)])
def test_the_conflict_of_an_absent_item_says_it_does_not_exist(current: Any) -> None:
    with pytest.raises(VersionConflict) as refused:  # If-Match: "0", as if 0 meant "absent"
        decide(PutItem("subaccount", "acme", {}, expected_version=0), current)
    said = str(refused.value)
    assert said.startswith("subaccount/acme does not exist"), said
    assert "is None" not in said and "If-None-Match: *" in said


@pytest.mark.parametrize("current", [None, ItemVersion(2, live=False)])
def test_deleting_a_missing_or_deleted_item_is_not_found(current: Any) -> None:
    with pytest.raises(NotFound, match="subaccount/acme"):
        decide(DeleteItem("subaccount", "acme"), current)


def test_recreating_a_deleted_item_continues_its_version_sequence() -> None:
    decision = decide(PutItem("subaccount", "acme", {}), ItemVersion(2, live=False))
    assert (decision.type, decision.version, decision.created) == (CONFIG_PUT, 3, True)


@pytest.mark.parametrize("stale", [1, 2])
def test_if_match_with_a_version_from_before_the_deletion_never_matches(stale: int) -> None:
    with pytest.raises(VersionConflict) as refused:
        decide(PutItem("subaccount", "acme", {}, expected_version=stale), ItemVersion(2, False))
    assert refused.value.actual is None


# -- fold, digest, diff ------------------------------------------------------------------------


def test_fold_applies_puts_and_deletes_in_order() -> None:
    state = fold({}, history())
    assert state == {"subaccount/acme": {"region": "eu20", "subaccount_id": "a"}}


def test_fold_starts_from_a_copy_and_leaves_the_snapshot_alone() -> None:
    snapshot = {"subaccount/old": {"region": "x", "subaccount_id": "y"}}
    state = fold(snapshot, history())
    assert snapshot == {"subaccount/old": {"region": "x", "subaccount_id": "y"}}
    assert set(state) == {"subaccount/old", "subaccount/acme"}


def test_apply_ignores_events_that_are_not_config_changes() -> None:
    state = {"subaccount/acme": {"region": "eu10"}}
    promoted = replace(event(9), type="Promoted", kind=None, name=None, version=None)
    assert apply(state, promoted) == {"subaccount/acme": {"region": "eu10"}}


def test_apply_of_a_delete_of_an_absent_key_leaves_the_state_unchanged() -> None:
    assert apply({}, event(1, CONFIG_DELETED)) == {}


def test_equal_states_have_equal_digests_whatever_their_key_order() -> None:
    one = {"a/x": {"p": 1, "q": [1, {"r": 2, "s": 3}]}, "b/y": {"t": "u"}}
    two = {"b/y": {"t": "u"}, "a/x": {"q": [1, {"s": 3, "r": 2}], "p": 1}}
    assert list(one) != list(two)
    assert digest(one) == digest(two)


def test_different_states_have_different_digests() -> None:
    assert digest({"a/x": {"p": 1}}) != digest({"a/x": {"p": 2}})
    assert digest({"a/x": [1, 2]}) != digest({"a/x": [2, 1]})


def test_diff_reports_added_removed_and_changed_items() -> None:
    before = {"k/kept": {"v": 1}, "k/gone": {"v": 2}, "k/changed": {"v": 3}}
    after = {"k/kept": {"v": 1}, "k/new": {"v": 4}, "k/changed": {"v": 5}}
    result = diff(before, after)
    assert result.as_dict() == {
        "added": {"k/new": {"v": 4}},
        "removed": {"k/gone": {"v": 2}},
        "changed": {"k/changed": {"from": {"v": 3}, "to": {"v": 5}}},
    }


def test_diff_of_equal_states_with_different_key_order_is_empty() -> None:
    result = diff({"k/a": {"x": 1, "y": 2}}, {"k/a": {"y": 2, "x": 1}})
    assert result.as_dict() == {"added": {}, "removed": {}, "changed": {}}


@st.composite
def config_events(draw: st.DrawFn) -> list[Event]:
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["subaccount", "resource", "system-mapping"]),
                st.sampled_from(["a", "b", "c", "d"]),
                st.one_of(
                    st.none(),
                    st.dictionaries(st.sampled_from(["p", "q", "r"]), st.integers(0, 9)),
                ),
            ),
            max_size=30,
        )
    )
    return [
        event(i, CONFIG_DELETED if data is None else CONFIG_PUT, name, data, kind=kind)
        for i, (kind, name, data) in enumerate(steps, start=1)
    ]


@given(events=config_events(), cut=st.integers(min_value=0, max_value=30))
def test_folding_the_rest_onto_a_snapshot_of_a_prefix_equals_a_full_replay(
    events: Any, cut: int
) -> None:
    cut = min(cut, len(events))
    snapshot = fold({}, events[:cut])
    assert fold(snapshot, events[cut:]) == fold({}, events)
    assert digest(fold(snapshot, events[cut:])) == digest(fold({}, events))


# -- the hash chain and envelopes --------------------------------------------------------------


def test_an_untouched_chain_verifies_from_genesis() -> None:
    assert verify_chain(GENESIS, history()) is None


def test_a_chain_verifies_from_the_middle_given_its_predecessor() -> None:
    events = history()
    assert verify_chain(events[1].chain, events[2:]) is None


def test_the_chain_detects_a_changed_data_field() -> None:
    events = history()
    events[2] = replace(events[2], data={"region": "evil", "subaccount_id": "a"})
    broken = verify_chain(GENESIS, events)
    assert broken is not None
    assert broken.position == 3
    assert broken.found == events[2].chain.hex()
    assert broken.expected != broken.found


def test_the_chain_detects_a_changed_position() -> None:
    events = history()
    events[1] = replace(events[1], position=7)
    broken = verify_chain(GENESIS, events)
    assert broken is not None and broken.position == 7


def test_the_chain_detects_a_reordered_pair() -> None:
    events = history()
    events[1], events[2] = events[2], events[1]
    broken = verify_chain(GENESIS, events)
    assert broken is not None and broken.position == 3


def test_the_chain_detects_a_removed_event() -> None:
    events = history()
    del events[1]
    broken = verify_chain(GENESIS, events)
    assert broken is not None and broken.position == 3


def test_the_chain_value_depends_on_every_earlier_event() -> None:
    one, two = history(), history()
    two[0] = replace(two[0], metadata={"actor": "mallory", "request_id": "r1"})
    assert chained(one)[-1].chain != chained(two)[-1].chain


def test_an_envelope_round_trips_to_an_equal_event_with_its_chain() -> None:
    for original in history():
        again = from_envelope(envelope(original))
        assert again == original
        assert again.chain == original.chain
        assert link(GENESIS, again) == link(GENESIS, original)


def test_an_envelope_carries_the_contract_fields_and_utc_time() -> None:
    doc = envelope(history()[0])
    assert set(doc) >= {
        "id",
        "position",
        "epoch",
        "type",
        "kind",
        "name",
        "version",
        "data",
        "metadata",
        "recorded_at",
        "chain",
    }
    assert doc["recorded_at"] == "2026-11-25T10:02:04.456789Z"
    assert doc["chain"] == history()[0].chain.hex()


def test_an_event_recorded_in_another_time_zone_hashes_like_its_utc_equivalent() -> None:
    utc = event(1, data={"region": "eu10", "subaccount_id": "a"})
    elsewhere = replace(utc, recorded_at=utc.recorded_at.astimezone(timezone(timedelta(hours=5))))
    assert link(GENESIS, utc) == link(GENESIS, elsewhere)
    assert from_envelope(envelope(elsewhere)).recorded_at == utc.recorded_at


def test_an_envelope_without_a_chain_value_reads_back_with_genesis() -> None:
    doc = envelope(history()[0])
    del doc["chain"]
    assert from_envelope(doc).chain == GENESIS


def test_routing_keys_name_the_kind_and_the_verb() -> None:
    assert event(1).routing_key == "config.subaccount.put"
    assert event(1, CONFIG_DELETED).routing_key == "config.subaccount.deleted"


# -- validation --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog(load_config_schemas())


VALID: dict[str, dict[str, Any]] = {
    "subaccount": {
        "region": "eu10",
        "subaccount_id": "3f2a9c",
        "display_name": "Acme",
        "location_id": "loc-1",
    },
    "system-mapping": {
        "virtual_host": "erp.virtual",
        "virtual_port": 443,
        "internal_host": "erp.internal",
        "internal_port": 44300,
        "protocol": "HTTPS",
        "backend_type": "abapSys",
        "principal_type": "x509",
    },
    "resource": {
        "system_mapping": "erp",
        "path": "/sap/bc",
        "match": "prefix",
        "methods": ["GET", "POST"],
    },
    "log-level": {"level": "WARNING"},
    "ui-certificate": {
        "certificate_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "private_key_ref": "vault:ui-key",
    },
    "snc": {
        "library_path": "/usr/lib/libsapcrypto.so",
        "my_name": "p:CN=scc",
        "quality_of_protection": 9,
    },
}


def refusal_paths(catalog: Catalog, kind: str, name: str, value: Any) -> list[str]:
    with pytest.raises(InvalidInput) as refused:
        catalog.check(kind, name, value)
    assert all(e.message for e in refused.value.errors)
    return sorted(e.path for e in refused.value.errors)


def test_the_catalog_knows_every_shipped_kind(catalog: Catalog) -> None:
    assert catalog.kinds == ALL_KINDS
    assert set(VALID) == ALL_KINDS


def test_the_catalog_refuses_to_start_without_a_schema_for_every_kind() -> None:
    schemas = load_config_schemas()
    del schemas["snc"]
    with pytest.raises(ValueError, match="snc"):
        Catalog(schemas)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_each_kind_accepts_its_valid_example(catalog: Catalog, kind: str) -> None:
    catalog.check(kind, "example-1", VALID[kind])


@pytest.mark.parametrize(
    ("kind", "change", "paths"),
    [
        ("system-mapping", {"virtual_port": 70000}, ["$.virtual_port"]),
        (
            "system-mapping",
            {"internal_port": 0, "protocol": "FTP"},
            ["$.internal_port", "$.protocol"],
        ),
        ("system-mapping", {"virtual_port": "443"}, ["$.virtual_port"]),
        ("subaccount", {"owner": "mallory"}, ["$"]),
        ("subaccount", {"region": ""}, ["$.region"]),
        ("resource", {"path": "sap/bc", "match": "fuzzy"}, ["$.match", "$.path"]),
        ("resource", {"methods": ["GET", "get"]}, ["$.methods[1]"]),
        ("log-level", {"level": "TRACE"}, ["$.level"]),
        ("ui-certificate", {"certificate_pem": "hello"}, ["$.certificate_pem"]),
        (
            "snc",
            {"my_name": "CN=scc", "quality_of_protection": 4},
            ["$.my_name", "$.quality_of_protection"],
        ),
    ],
)
def test_each_kind_refuses_a_bad_value_with_the_json_path_of_every_error(
    catalog: Catalog, kind: str, change: dict[str, Any], paths: list[str]
) -> None:
    assert refusal_paths(catalog, kind, "example-1", {**VALID[kind], **change}) == paths


def test_an_additional_property_is_refused_naming_the_property(catalog: Catalog) -> None:
    with pytest.raises(InvalidInput) as refused:
        catalog.check("subaccount", "acme", {**VALID["subaccount"], "owner": "mallory"})
    assert "owner" in refused.value.errors[0].message


@pytest.mark.parametrize("kind", sorted(VALID))
def test_each_kind_refuses_a_value_missing_a_required_property(catalog: Catalog, kind: str) -> None:
    schema = load_config_schemas()[kind]
    missing = schema["required"][0]
    value = {k: v for k, v in VALID[kind].items() if k != missing}
    with pytest.raises(InvalidInput) as refused:
        catalog.check(kind, "example-1", value)
    assert [e.path for e in refused.value.errors] == ["$"]
    assert missing in refused.value.errors[0].message


def test_a_value_that_is_not_an_object_is_refused_at_the_root(catalog: Catalog) -> None:
    assert refusal_paths(catalog, "subaccount", "acme", ["eu10"]) == ["$"]


def test_an_unknown_kind_is_refused_with_path_kind(catalog: Catalog) -> None:
    assert refusal_paths(catalog, "printer", "acme", {}) == ["kind"]


@pytest.mark.parametrize("name", ["", "Acme", "-acme", "a b", "acme\n", "a" * 64, "ä", "a/b"])
def test_a_bad_name_is_refused_with_path_name(catalog: Catalog, name: str) -> None:
    assert refusal_paths(catalog, "subaccount", name, VALID["subaccount"]) == ["name"]


def test_an_unknown_kind_and_a_bad_name_are_both_reported(catalog: Catalog) -> None:
    assert refusal_paths(catalog, "printer", "Bad Name", {}) == ["kind", "name"]


def test_check_key_accepts_the_longest_allowed_name(catalog: Catalog) -> None:
    catalog.check_key("subaccount", "a" + "b" * 62)


def test_a_nul_character_in_a_string_is_refused_at_its_json_path(catalog: Catalog) -> None:
    value = {**VALID["subaccount"], "display_name": "Ac\x00me"}
    assert refusal_paths(catalog, "subaccount", "acme", value) == ["$.display_name"]


def test_a_nul_character_is_reported_alongside_other_errors(catalog: Catalog) -> None:
    value = {**VALID["subaccount"], "display_name": "Ac\x00me", "region": ""}
    assert refusal_paths(catalog, "subaccount", "acme", value) == ["$.display_name", "$.region"]
