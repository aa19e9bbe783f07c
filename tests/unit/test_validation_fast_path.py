"""The compiled fast path of validation accepts exactly what jsonschema accepts. No I/O."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from shadowline.adapters.resources import load_config_schemas
from shadowline.domain.errors import InvalidInput
from shadowline.domain.validation import Catalog

SCHEMAS = load_config_schemas()
CATALOG = Catalog(SCHEMAS)

# Values near every edge the shipped schemas draw: bounds, bools posing as numbers, integral
# floats, empty and long strings, a trailing newline against "$", NUL, enum members.
EDGY: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 8, 9, 443, 65535, 65536, -1, True, False, None]),
    st.sampled_from([1.0, 443.0, 443.5, 65535.0, 65536.0, 9.0]),
    st.sampled_from(["", "x", "/", "/sap", "sap", "p:", "p:CN", "GET", "GET\n", "get", "\x00"]),
    st.sampled_from(
        ["HTTPS", "FTP", "exact", "prefix", "DEBUG", "TRACE", "-----BEGIN CERTIFICATE-----"]
    ),
    st.sampled_from(["a" * 63, "a" * 64, "a" * 100, "a" * 101, "a" * 253, "a" * 254]),
    st.lists(st.sampled_from(["GET", "POST", "GET\n", "get", "", "A" * 17, 1]), max_size=3),
    st.text(max_size=5),
    st.integers(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def values(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    schema = SCHEMAS[kind]
    value: dict[str, Any] = {}
    for prop in [*schema["properties"], "unknown"]:
        choice = draw(st.sampled_from(["good", "good", "edgy", "absent"]))
        if choice == "edgy":
            value[prop] = draw(EDGY)
        elif choice == "good" and prop != "unknown":
            value[prop] = draw(st.sampled_from(GOOD[kind][prop]))
    return value


GOOD: dict[str, dict[str, list[Any]]] = {
    "subaccount": {
        "region": ["eu10"],
        "subaccount_id": ["3f2a9c"],
        "display_name": ["Acme", ""],
        "location_id": ["loc-1"],
    },
    "system-mapping": {
        "virtual_host": ["erp.virtual"],
        "virtual_port": [443, 1, 65535],
        "internal_host": ["erp.internal"],
        "internal_port": [44300],
        "protocol": ["HTTPS", "RFC"],
        "backend_type": ["abapSys"],
        "principal_type": ["x509"],
    },
    "resource": {
        "system_mapping": ["erp"],
        "path": ["/sap/bc"],
        "match": ["prefix", "exact"],
        "methods": [["GET", "POST"], []],
    },
    "log-level": {"level": ["WARNING"]},
    "ui-certificate": {
        "certificate_pem": ["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"],
        "private_key_ref": ["vault:ui-key"],
    },
    "snc": {
        "library_path": ["/usr/lib/libsapcrypto.so"],
        "my_name": ["p:CN=scc"],
        "quality_of_protection": [1, 9],
    },
}


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return isinstance(value, list) and any(_has_nul(v) for v in value)


def _jsonschema_accepts(kind: str, value: Any) -> bool:
    valid = not any(Draft202012Validator(SCHEMAS[kind]).iter_errors(value))
    return valid and not _has_nul(value)


def _catalog_accepts(kind: str, value: Any) -> bool:
    try:
        CATALOG.check(kind, "example-1", value)
    except InvalidInput:
        return False
    return True


def test_every_kind_has_examples_for_every_property() -> None:
    assert {k: set(v) for k, v in GOOD.items()} == {
        k: set(s["properties"]) for k, s in SCHEMAS.items()
    }


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_catalog_accepts_exactly_what_jsonschema_accepts(kind: str, data: Any) -> None:
    value = data.draw(values(kind))
    assert _catalog_accepts(kind, value) == _jsonschema_accepts(kind, value), value


def test_a_value_the_fast_path_alone_would_refuse_is_still_accepted() -> None:
    # Python's "$" also matches before a final newline, and jsonschema keeps that meaning;
    # fastjsonschema reads "$" as the end of the string and refuses. jsonschema decides.
    value = {"system_mapping": "erp", "path": "/sap", "match": "exact", "methods": ["GET\n"]}
    assert _jsonschema_accepts("resource", value)
    CATALOG.check("resource", "example-1", value)
