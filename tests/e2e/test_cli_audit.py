"""`shadowline audit verify` against a real instance process: exit 0 on an untouched log, and a
non-zero exit code naming the item when a superuser changed what is served behind the log's back."""

from __future__ import annotations

import asyncpg
import orjson
import pytest

from tests.e2e.conftest import Process
from tests.e2e.test_cli import shadowline, started

pytestmark = pytest.mark.e2e

ACME = {"region": "eu10", "subaccount_id": "sa-1"}


def fill(process: Process) -> None:
    for name in ("acme", "beta"):
        result = shadowline(
            process, "config", "put", "subaccount", name, orjson.dumps(ACME).decode()
        )
        assert result.exit_code == 0, result.output


async def test_audit_verify_exits_0_on_an_untouched_log_and_1_once_the_served_state_was_changed(
    instance_process: Process, db_url: str
) -> None:
    process = started(instance_process)
    fill(process)

    clean = shadowline(process, "audit", "verify")
    owner = await asyncpg.connect(db_url)
    try:
        await owner.execute(
            'UPDATE items SET value = \'{"region": "evil", "subaccount_id": "sa-1"}\' '
            "WHERE name = 'beta'"
        )
    finally:
        await owner.close()
    tampered = shadowline(process, "audit", "verify")
    as_json = shadowline(process, "audit", "verify", "--json")

    assert clean.exit_code == 0, clean.output
    assert "ok: 2 events chained" in clean.output
    assert tampered.exit_code == 1, tampered.output
    assert "subaccount/beta" in tampered.output
    doc = orjson.loads(as_json.output)
    assert as_json.exit_code == 1
    assert (doc["ok"], doc["problem"], doc["key"]) == (False, "state", "subaccount/beta")
    assert doc["found"]["value"]["region"] == "evil"


def test_audit_verify_exits_3_when_the_instance_is_unreachable() -> None:
    result = shadowline(None, "audit", "verify", "--url", "http://127.0.0.1:9", "--timeout", "2")

    assert result.exit_code == 3, result.output
