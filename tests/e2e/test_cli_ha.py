"""`shadowline ha ...` against a real master and shadow: `--wait` gives up with exit code 4 while
the master has not confirmed the shadow, and `ha setup` returns only once the shadow holds the
master's whole history. A shadow refuses writes with 503: exit code 3."""

from __future__ import annotations

import orjson

from tests.e2e.conftest import Pair
from tests.e2e.test_cli import fill, shadowline


def test_ha_setup_waits_until_the_shadow_has_applied_the_masters_history(pair: Pair) -> None:
    for process in (pair.master, pair.shadow):
        process.start()
    for process in (pair.master, pair.shadow):
        process.wait_healthy()
    fill(pair.master, 300)
    enabled = shadowline(pair.master, "ha", "enable", "--json")
    assert enabled.exit_code == 0, enabled.output
    assert orjson.loads(enabled.stdout)["role"] == "master"

    # Nobody confirms on the master: the wait runs out of time, the join itself stands.
    joined = shadowline(
        pair.shadow, "ha", "join", "--master-url", pair.master.url, "--wait", "--timeout", "1"
    )
    assert joined.exit_code == 4, joined.output
    assert "still pending" in joined.stderr

    setup = shadowline(
        None,
        "ha",
        "setup",
        "--master-url",
        pair.master.url,
        "--shadow-url",
        pair.shadow.url,
        "--json",
        "--timeout",
        "120",
        SHADOWLINE_PASSWORD=pair.master.env["SHADOWLINE_ADMIN_PASSWORD"],
    )
    assert setup.exit_code == 0, setup.output
    status = orjson.loads(setup.stdout)
    assert status["shadow"]["state"] == "connected"
    assert status["shadow"]["position"] == status["position"] >= 300
    shadow = orjson.loads(shadowline(pair.shadow, "ha", "status", "--json").stdout)
    assert shadow["role"] == "shadow"
    assert shadow["position"] >= 300


def test_a_write_to_the_shadow_exits_3_and_names_the_master(pair: Pair) -> None:
    pair.set_up()
    value = '{"region": "eu10", "subaccount_id": "a1"}'
    refused = shadowline(pair.shadow, "config", "put", "subaccount", "acme", value)
    assert refused.exit_code == 3, refused.output
    assert "HTTP 503" in refused.stderr
    assert f"the master is {pair.master.url}" in refused.stderr
