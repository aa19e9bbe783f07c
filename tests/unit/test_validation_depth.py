"""Values nested too deep are refused by the catalog with 422, without recursion."""

from __future__ import annotations

from typing import Any

import pytest

from shadowline.adapters.resources import load_config_schemas
from shadowline.domain.errors import InvalidInput
from shadowline.domain.validation import MAX_DEPTH, Catalog


def lists(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog(load_config_schemas())


def test_a_member_nested_to_the_limit_gets_the_schemas_own_answer(catalog: Catalog) -> None:
    value = {"region": "eu10", "subaccount_id": "a1", "display_name": lists(MAX_DEPTH - 1)}
    with pytest.raises(InvalidInput) as refused:
        catalog.check("subaccount", "acme", value)
    assert [e.path for e in refused.value.errors] == ["$.display_name"]
    assert "nested" not in str(refused.value)  # jsonschema's: not a string


def test_a_member_nested_beyond_the_limit_is_refused_by_its_path(catalog: Catalog) -> None:
    for depth in (MAX_DEPTH + 1, 10_000):
        value = {"region": "eu10", "subaccount_id": "a1", "display_name": lists(depth)}
        with pytest.raises(InvalidInput) as refused:
            catalog.check("subaccount", "acme", value)
        assert [e.path for e in refused.value.errors] == ["$.display_name"]
        assert f"deeper than {MAX_DEPTH}" in refused.value.errors[0].message


def test_a_bare_value_nested_beyond_the_limit_is_refused(catalog: Catalog) -> None:
    with pytest.raises(InvalidInput) as refused:
        catalog.check("subaccount", "acme", lists(5000))
    assert [e.path for e in refused.value.errors] == ["$[0]"]
