"""Settings from SHADOWLINE_* variables: defaults, the timing rule, validation and masking."""

from __future__ import annotations

import os
import socket

import orjson
import pytest
from pydantic import SecretStr, ValidationError

from shadowline.settings import WATCHDOG_SETTINGS, Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the SHADOWLINE_* variables it sets itself."""
    for name in list(os.environ):
        if name.startswith("SHADOWLINE_"):
            monkeypatch.delenv(name)


def test_defaults_follow_the_contract() -> None:
    settings = Settings()
    assert settings.database_url == "postgresql://postgres@127.0.0.1:5432/shadowline"
    assert settings.amqp_url.get_secret_value() == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.instance == socket.gethostname()
    assert settings.cluster == "default"
    assert settings.http_bind == "127.0.0.1:8080"
    assert settings.cluster_secret is None
    assert settings.admin_password is None
    assert settings.advertise_url is None
    assert settings.heartbeat_interval == 1.0
    assert settings.takeover_delay == 5.0
    assert settings.public_url == "http://127.0.0.1:8080"


def test_the_default_timings_keep_the_lease_and_a_heartbeat_inside_the_takeover_delay() -> None:
    settings = Settings()
    assert settings.lease + settings.lease_margin < settings.takeover_delay


def test_every_setting_is_read_from_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {
        "SHADOWLINE_DATABASE_URL": "postgresql://app@db.example:5433/sl",
        "SHADOWLINE_AMQP_URL": "amqp://bob:pw@rabbit:5672/vh",
        "SHADOWLINE_INSTANCE": "scc-a",
        "SHADOWLINE_CLUSTER": "prod-eu",
        "SHADOWLINE_HTTP_BIND": "0.0.0.0:9443",
        "SHADOWLINE_CLUSTER_SECRET": "s3",
        "SHADOWLINE_ADMIN_PASSWORD": "pw",
        "SHADOWLINE_ADVERTISE_URL": "https://scc-a.example/",
        "SHADOWLINE_HEARTBEAT_INTERVAL": "0.5",
        "SHADOWLINE_TAKEOVER_DELAY": "3",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.database_url == "postgresql://app@db.example:5433/sl"
    assert settings.amqp_url.get_secret_value() == "amqp://bob:pw@rabbit:5672/vh"
    assert (settings.instance, settings.cluster) == ("scc-a", "prod-eu")
    assert (settings.bind_host, settings.bind_port) == ("0.0.0.0", 9443)
    assert settings.cluster_secret is not None
    assert settings.cluster_secret.get_secret_value() == "s3"
    assert settings.public_url == "https://scc-a.example"
    assert (settings.heartbeat_interval, settings.takeover_delay) == (0.5, 3.0)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.takeover_delay = 1.0


def test_heartbeat_one_and_takeover_five_satisfy_the_timing_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHADOWLINE_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("SHADOWLINE_TAKEOVER_DELAY", "5")
    settings = Settings()
    assert settings.lease == pytest.approx(3.0)
    assert settings.lease + settings.lease_margin < settings.takeover_delay


def test_heartbeat_three_and_takeover_four_are_refused_naming_the_timing_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHADOWLINE_HEARTBEAT_INTERVAL", "3")
    monkeypatch.setenv("SHADOWLINE_TAKEOVER_DELAY", "4")
    with pytest.raises(ValidationError) as refused:
        Settings()
    message = str(refused.value)
    assert "timing rule" in message
    assert "lease" in message and "takeover delay" in message
    assert "SHADOWLINE_TAKEOVER_DELAY" in message


def test_a_takeover_delay_exactly_at_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # lease 0.6 * 5 = 3 plus a heartbeat of 2 equals the delay: the rule is strict.
    monkeypatch.setenv("SHADOWLINE_HEARTBEAT_INTERVAL", "2")
    monkeypatch.setenv("SHADOWLINE_TAKEOVER_DELAY", "5")
    with pytest.raises(ValidationError, match="timing rule"):
        Settings()


@pytest.mark.parametrize("name", ["SHADOWLINE_HEARTBEAT_INTERVAL", "SHADOWLINE_TAKEOVER_DELAY"])
@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_timings_must_be_positive_numbers(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("bind", ["localhost", "localhost:", ":8080", "host:http", "host:70000"])
def test_a_bad_http_bind_is_refused(monkeypatch: pytest.MonkeyPatch, bind: str) -> None:
    monkeypatch.setenv("SHADOWLINE_HTTP_BIND", bind)
    with pytest.raises(ValidationError, match="http_bind"):
        Settings()


def test_an_ipv6_http_bind_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWLINE_HTTP_BIND", "[::1]:8080")
    settings = Settings()
    assert (settings.bind_host, settings.bind_port) == ("::1", 8080)


def test_a_database_url_that_is_not_postgresql_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWLINE_DATABASE_URL", "mysql://app@db/sl")
    with pytest.raises(ValidationError, match="postgresql"):
        Settings()


@pytest.mark.parametrize("cluster", ["Prod", "-prod", "a b", ""])
def test_a_cluster_name_that_cannot_namespace_broker_names_is_refused(
    monkeypatch: pytest.MonkeyPatch, cluster: str
) -> None:
    monkeypatch.setenv("SHADOWLINE_CLUSTER", cluster)
    with pytest.raises(ValidationError):
        Settings()


SECRETS = ("amqp-pw-123", "db-pw-456", "cluster-secret-789", "admin-pw-000")


def test_masked_settings_hide_every_password_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWLINE_AMQP_URL", "amqp://bob:amqp-pw-123@rabbit:5672/vh")
    monkeypatch.setenv("SHADOWLINE_DATABASE_URL", "postgresql://app:db-pw-456@db:5432/sl")
    monkeypatch.setenv("SHADOWLINE_CLUSTER_SECRET", "cluster-secret-789")
    monkeypatch.setenv("SHADOWLINE_ADMIN_PASSWORD", "admin-pw-000")
    shown = Settings().masked()
    text = orjson.dumps(shown, default=str).decode()
    for secret in SECRETS:
        assert secret not in text
    assert shown["amqp_url"] == "amqp://bob:***@rabbit:5672/vh"
    assert shown["database_url"] == "postgresql://app:***@db:5432/sl"
    assert shown["cluster_secret"] == "***"
    assert shown["admin_password"] == "***"


def test_masked_settings_show_everything_that_is_not_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHADOWLINE_INSTANCE", "scc-a")
    shown = Settings().masked()
    assert shown["instance"] == "scc-a"
    assert shown["http_bind"] == "127.0.0.1:8080"
    assert shown["heartbeat_interval"] == 1.0
    assert shown["takeover_delay"] == 5.0
    assert shown["lease"] == pytest.approx(3.0)
    assert shown["cluster_secret"] is None
    assert shown["admin_password"] is None


def test_masked_settings_hide_a_password_given_in_the_database_url_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # libpq and asyncpg both accept postgresql://app@db/sl?password=...
    monkeypatch.setenv("SHADOWLINE_DATABASE_URL", "postgresql://app@db:5432/sl?password=db-pw-456")
    text = orjson.dumps(Settings().masked(), default=str).decode()
    assert "db-pw-456" not in text


# -- who may publish config commands, and what start-up warns about ------------------------------


def test_by_default_guest_is_not_a_publisher_even_as_the_instances_own_broker_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHADOWLINE_CLUSTER", "prod")
    settings = Settings()
    assert settings.amqp_url.get_secret_value().startswith("amqp://guest:")
    assert settings.publishers == frozenset({"shadowline-prod-publisher"})


def test_the_instances_own_broker_user_other_than_guest_is_a_publisher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHADOWLINE_CLUSTER", "prod")
    monkeypatch.setenv(
        "SHADOWLINE_AMQP_URL",
        "amqp://shadowline-prod-node-a:pw@h1:5672/,amqp://shadowline-prod-node-a:pw@h2:5672/",
    )
    assert Settings().publishers == {"shadowline-prod-publisher", "shadowline-prod-node-a"}


def test_guest_on_any_broker_node_list_is_not_a_publisher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWLINE_AMQP_URL", "amqp://guest:guest@h1:5672/,amqp://guest:g@h2/")
    assert "guest" not in Settings().publishers


@pytest.mark.parametrize(
    ("listed", "expected"),
    [("guest", {"guest"}), (" ops-robot , guest,", {"ops-robot", "guest"})],
)
def test_command_publishers_opts_guest_in_explicitly_and_replaces_the_default(
    monkeypatch: pytest.MonkeyPatch, listed: str, expected: set[str]
) -> None:
    monkeypatch.setenv("SHADOWLINE_COMMAND_PUBLISHERS", listed)
    assert Settings().publishers == expected


def test_a_cluster_secret_shorter_than_32_characters_is_accepted_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SHADOWLINE_CLUSTER_SECRET", "s" * 31)
    settings = Settings()
    (warning,) = settings.startup_warnings()
    assert "SHADOWLINE_CLUSTER_SECRET has 31 characters, fewer than 32" in warning
    with caplog.at_level("WARNING", logger="shadowline.settings"):
        settings.masked()
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [warning]
    assert "s" * 31 not in caplog.text


@pytest.mark.parametrize("secret", [None, "s" * 32, "0123456789abcdef" * 4])
def test_no_warning_without_a_secret_or_with_one_of_32_characters_or_more(
    monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    if secret is not None:
        monkeypatch.setenv("SHADOWLINE_CLUSTER_SECRET", secret)
    assert Settings().startup_warnings() == []


def test_the_watchdog_logs_the_settings_it_uses_and_not_the_instances() -> None:
    settings = Settings(admin_password=SecretStr("pw"), cluster_secret=SecretStr("s" * 40))
    shown = settings.masked(WATCHDOG_SETTINGS)
    assert set(shown) == set(WATCHDOG_SETTINGS)
    assert (
        "database_url" not in shown and "admin_password" not in shown and "http_bind" not in shown
    )
    assert shown["cluster_secret"] == "***" and "guest:guest" not in shown["amqp_url"]
