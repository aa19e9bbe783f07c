"""One typed, frozen settings object per service, read from SHADOWLINE_* environment variables.

Every timeout of the HA machinery derives from the takeover delay, and the rule
`lease + margin < takeover delay` is checked here, once, at start-up (Patroni-style), so a
master always fences itself before a watchdog may promote its shadow.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import socket
from collections.abc import Collection
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shadowline.domain.ha import timing_problem
from shadowline.masking import masked_url

log = logging.getLogger(__name__)

LEASE_FRACTION = 0.6
# RabbitMQ's well-known default login: anyone on the broker's host has it without being given
# anything, so it is never an implicit publisher of config commands (SHADOWLINE_COMMAND_PUBLISHERS
# may still name it, and the instance then warns at start-up).
GUEST = "guest"
# HMAC-SHA256 keys are derived from the cluster secret, and the heartbeats' MACs can be read by
# any broker user: a shorter secret may be guessed offline from one captured heartbeat.
MIN_SECRET_LENGTH = 32


def _program(command: str) -> str | None:
    """The executable a hook's command line runs, as PATH resolves it; None if none is."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words:
        return None
    found = shutil.which(words[0])
    return found if found is not None and os.path.isfile(found) else None


def broker_user(amqp_url: str) -> str:
    """The user of a SHADOWLINE_AMQP_URL (of its first node when it lists several)."""
    return unquote(urlsplit(amqp_url.split(",")[0].strip()).username or "")


# The settings the watchdog reads (it logs these, not the instance's database, HTTP or admin
# password settings, which it never uses).
WATCHDOG_SETTINGS: Final = (
    "amqp_url",
    "ca_file",
    "cluster",
    "cluster_secret",
    "instance",
    "takeover_delay",
    "watchdog_http_bind",
)


class Settings(BaseSettings):
    # hide_input_in_errors: a refused URL holds a password, and the error is printed at start.
    model_config = SettingsConfigDict(
        env_prefix="SHADOWLINE_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    database_url: str = "postgresql://postgres@127.0.0.1:5432/shadowline"
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    # One word of a routing key (heartbeat.<instance>, promote.<instance>): no dots, so the
    # default is the host name without its domain.
    instance: str = Field(
        default_factory=lambda: socket.gethostname().split(".")[0],
        pattern=r"^[A-Za-z0-9_-]{1,63}$",
    )
    cluster: str = Field(default="default", pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    http_bind: str = "127.0.0.1:8080"
    cluster_secret: SecretStr | None = None
    admin_password: SecretStr | None = None
    advertise_url: str | None = None
    heartbeat_interval: float = Field(default=1.0, gt=0)
    takeover_delay: float = Field(default=5.0, gt=0)
    snapshot_interval: int = Field(default=10_000, ge=10)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    batch_max: int = Field(default=1000, ge=1, le=10000)
    # How long a sync write waits for the shadow before the master degrades to async.
    sync_timeout: float = Field(default=1.0, gt=0)
    # Broker users whose config commands the master applies (comma-separated). Empty: the
    # cluster's publisher user from `broker-setup` and the user of SHADOWLINE_AMQP_URL unless
    # that is guest (see `publishers`).
    command_publishers: str = ""
    # The master raises alert.lag when its shadow is more than this many seconds behind.
    lag_alert_seconds: float = Field(default=10.0, gt=0)
    # How long start-up waits for the database before giving up (exit code 2).
    startup_patience: float = Field(default=15.0, ge=0)
    # The watchdog's own /health and /metrics (host:port); off when unset, since several
    # watchdogs may run on one host (and beside the instances, as in `shadowline demo`).
    watchdog_http_bind: str | None = None
    # The HTTP server's bounds (instance.limits): open connections (the oldest idle one is closed
    # to make room; lowered at start to what the process's file-descriptor limit allows), the
    # bytes of a request line and its headers (431 beyond), and the seconds a client has to send
    # them (slowloris; counted from the connection, or from the previous response).
    http_max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    http_max_header_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    http_header_timeout: float = Field(default=10.0, gt=0, le=3600)
    # Failed logins (HTTP Basic, the screen's form) per source address: after this many within
    # the window the source gets 429 with Retry-After, without an Argon2 check, until it ends.
    login_max_failures: int = Field(default=10, ge=1)
    login_failure_window: float = Field(default=60.0, gt=0)
    # Hooks (application.hooks): command lines split as a shell splits words, run without one.
    # on_role_change: once per epoch and role this instance takes; before_promote: before a
    # shadow takes writes, its failure aborting the promotion. Each within its timeout.
    on_role_change: str | None = None
    on_role_change_timeout: float = Field(default=60.0, gt=0, le=3600)
    before_promote: str | None = None
    before_promote_timeout: float = Field(default=10.0, gt=0, le=60)
    # HTTPS with this instance's own certificate (both or neither); the CA file its calls to
    # peers trust (else the system's CAs): adapters.tls.
    tls_cert: str | None = None
    tls_key: str | None = None
    ca_file: str | None = None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not urlsplit(value).scheme.startswith("postgresql"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url(cls, value: SecretStr) -> SecretStr:
        # One node, or several of one RabbitMQ cluster, comma-separated (adapters.amqp_nodes
        # connects to them in turn); checked here so a typo fails at start, never quoted back.
        urls = [u.strip() for u in value.get_secret_value().split(",") if u.strip()]
        if not urls:
            raise ValueError("no AMQP URL given")
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
                raise ValueError(
                    f"not an AMQP URL (amqp://user:password@host:port/vhost): "
                    f"{parts.scheme}://{parts.hostname or ''}"
                )
        return value

    @field_validator("http_bind", "watchdog_http_bind")
    @classmethod
    def _bind(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port")
        return value

    @field_validator("admin_password")
    @classmethod
    def _admin_password(cls, value: SecretStr | None) -> SecretStr | None:
        # The users' one rule, imported here: the watchdog reads these settings too, has no users.
        from shadowline.domain.users import password_problem

        if value is not None and (problem := password_problem(value.get_secret_value())):
            raise ValueError(problem)
        return value

    @field_validator("on_role_change", "before_promote")
    @classmethod
    def _hook(cls, value: str | None) -> str | None:
        from shadowline.domain.hooks import command_problem

        if value is None or not value.strip():
            return None  # set but empty: no hook, as when unset
        problem = command_problem(value, _program(value))
        if problem is not None:
            raise ValueError(f"the hook's command {problem}")
        return value

    @model_validator(mode="after")
    def _before_promote_rule(self) -> Settings:
        # A promote command is taken only within signing.WINDOW of its issue: the drain (up to
        # the takeover delay) and the hook must both fit, or no promotion could ever succeed.
        from shadowline.domain.signing import WINDOW

        if self.before_promote and self.takeover_delay + self.before_promote_timeout >= WINDOW:
            raise ValueError(
                f"SHADOWLINE_BEFORE_PROMOTE_TIMEOUT {self.before_promote_timeout:.1f}s + takeover "
                f"delay {self.takeover_delay:.1f}s must be < {WINDOW:.0f}s, the time a promote "
                "command stays valid"
            )
        return self

    @model_validator(mode="after")
    def _tls(self) -> Settings:
        if not (self.tls_cert or self.tls_key or self.ca_file):
            return self  # no TLS: no TLS modules loaded (the CLI's and watchdog's start-up)
        from shadowline.tls_files import server_problem, trust_problem

        if problem := server_problem(self.tls_cert, self.tls_key) or trust_problem(self.ca_file):
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _timing_rule(self) -> Settings:
        problem = timing_problem(self.lease, self.lease_margin, self.takeover_delay)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def lease(self) -> float:
        """How long a master may go without confirmed heartbeats before it fences itself."""
        return self.takeover_delay * LEASE_FRACTION

    @property
    def broker_connect_timeout(self) -> float:
        """How long each broker node may take to accept a (re)connection before the next is
        tried: a third of the lease (at most 2 s), so a master whose node is lost still finds
        another within its lease when one more node of the list is stopped too."""
        return max(0.1, min(2.0, self.lease / 3))

    @property
    def lease_margin(self) -> float:
        """One heartbeat: the master notices a lost lease at most one interval late."""
        return self.heartbeat_interval

    @property
    def publishers(self) -> frozenset[str]:
        """The broker users allowed to publish config commands (see command_publishers)."""
        if self.command_publishers.strip():
            return frozenset(u.strip() for u in self.command_publishers.split(",") if u.strip())
        # The instance's own broker user stays a publisher: it is this instance's own credential
        # (`shadowline-<cluster>-<instance>` from broker-setup, or a deployment's one user as in
        # compose.yaml), kept beside SHADOWLINE_CLUSTER_SECRET, which already lets its holder sign
        # promote commands, so accepting its commands gives nobody anything new; the watchdog
        # and the monitor have users of their own, not publishers. guest is never implicit: it
        # is RabbitMQ's default login (and SHADOWLINE_AMQP_URL's default), known to everyone
        # rather than given to this instance; only SHADOWLINE_COMMAND_PUBLISHERS can allow it.
        own = {broker_user(self.amqp_url.get_secret_value())} - {"", GUEST}
        return frozenset({f"shadowline-{self.cluster}-publisher", *own})

    def startup_warnings(self) -> list[str]:
        """What is accepted but weak: logged at start-up with the effective settings."""
        warnings = []
        secret = self.cluster_secret.get_secret_value() if self.cluster_secret else None
        if secret is not None and len(secret) < MIN_SECRET_LENGTH:
            warnings.append(
                f"SHADOWLINE_CLUSTER_SECRET has {len(secret)} characters, fewer than "
                f"{MIN_SECRET_LENGTH}: any broker user can read heartbeats and their MACs and may "
                "guess a short secret offline; use e.g. `openssl rand -hex 32`"
            )
        return warnings

    @property
    def bind_host(self) -> str:
        return self.http_bind.rpartition(":")[0].strip("[]")

    @property
    def bind_port(self) -> int:
        return int(self.http_bind.rpartition(":")[2])

    @property
    def public_url(self) -> str:
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        host = self.bind_host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return f"{'https' if self.tls_cert else 'http'}://{host}:{self.bind_port}"

    def masked_for_watchdog(self) -> dict[str, Any]:
        """What the watchdog logs: the settings it uses (WATCHDOG_SETTINGS), masked."""
        return self.masked(WATCHDOG_SETTINGS)

    def masked(self, only: Collection[str] | None = None) -> dict[str, Any]:
        """The effective settings, secrets masked: what a service logs once at start-up (and
        the start-up warnings, logged here so that every service that logs its settings logs
        them too); `only`: the settings that service uses (the watchdog's: WATCHDOG_SETTINGS)."""
        for warning in self.startup_warnings():
            log.warning("%s", warning)
        shown = self.model_dump()
        shown["database_url"] = masked_url(self.database_url)
        shown["amqp_url"] = ",".join(
            masked_url(url.strip()) for url in self.amqp_url.get_secret_value().split(",")
        )
        for secret in ("cluster_secret", "admin_password"):
            shown[secret] = "***" if getattr(self, secret) else None
        shown["lease"] = self.lease
        if only is not None:
            return {name: shown[name] for name in only}
        return shown
