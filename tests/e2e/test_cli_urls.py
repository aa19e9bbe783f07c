"""The console script tells where it went: the URL it could not reach, a URL given without a
scheme, and the master when an HA action is sent to the shadow (as a write is)."""

from __future__ import annotations

from tests.e2e.conftest import Pair, Process, free_port
from tests.e2e.test_cli import shadowline, started


def test_an_unreachable_instance_is_named_by_its_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    result = shadowline(
        None, "config", "get", "subaccount", "acme", "--url", url, "--password", "x"
    )

    assert result.exit_code == 3, result.output
    assert f"cannot reach the instance at {url}" in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_a_url_without_a_scheme_reaches_the_instance_over_http(
    instance_process: Process,
) -> None:
    process = started(instance_process)
    bare = process.url.removeprefix("http://")

    result = shadowline(
        None,
        "ha",
        "status",
        "--json",
        "--url",
        bare,
        "--password",
        process.env["SHADOWLINE_ADMIN_PASSWORD"],
    )

    assert result.exit_code == 0, result.output
    assert '"role"' in result.stdout


def test_a_url_with_a_scheme_the_client_cannot_speak_is_a_usage_error() -> None:
    result = shadowline(None, "ha", "status", "--url", "ftp://127.0.0.1:21", "--password", "x")

    assert result.exit_code == 2, result.output
    assert "bad URL" in result.stderr and "Traceback" not in result.output


def test_switch_roles_sent_to_the_shadow_exits_1_and_names_the_master(pair: Pair) -> None:
    pair.set_up()

    refused = shadowline(pair.shadow, "ha", "switch-roles")

    assert refused.exit_code == 1, refused.output  # refused (409): ask the master instead
    assert "switch roles runs on the master" in refused.stderr, refused.stderr
    assert f"the master is {pair.master.url}" in refused.stderr, refused.stderr
