"""Several instances behind one client (`SHADOWLINE_URL` / `--url`, comma-separated): writes and
HA actions go to the writable master and follow it across a failover or a switch of roles, as
libpq's `target_session_attrs=read-write` does; reads go to the first instance that answers.

Each request is a plan (client.plans), so `Client` and `AsyncClient` drive the same ones.

The master is the instance whose `GET /master` answers 200 (DESIGN: only on the writable
master); without one, the plan asks again every `RETRY` seconds for `patience` seconds (a
failover takes a few). A request that certainly did not arrive (the connection was refused) is
sent to the next master found. A config write whose outcome is unknown (the connection broke
after sending, a timeout, a 503) is never sent again blindly: the plan reads the item's version
on the master, then looks for its own X-Request-Id among the item's events; found, the write
took effect and its event is the answer; not found, it is sent again guarded by that version
(If-Match, or If-None-Match: * when absent), so a first attempt that lands late makes the
second a conflict, which is checked the same way, never a second write. An HA action whose
outcome is unknown is not sent again (switching roles twice swaps them back): its error is
the answer.
"""

from __future__ import annotations

import contextlib
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import orjson

from shadowline.client.plans import (
    Outcome,
    Plan,
    Send,
    Sleep,
    answer,
    find_event,
    not_received,
    refused_here,
    with_request_id,
)
from shadowline.client.requests import Call, R
from shadowline.client.types import ClientError, Written

T = TypeVar("T")
RETRY = 0.25  # seconds between two looks for the master
PROBE = 2.0  # seconds one look at one instance may take
ROUNDS = 5  # checks of one write's unknown outcome before the caller is told it is unknown
SKEW = timedelta(minutes=1)  # before the first send, by the master's clock: Date is to the second
UNKNOWN = (500, 502, 503, 504)  # a write answered so may or may not have been done (a proxy's too)
LOCAL_KINDS = frozenset({"log-level", "ui-certificate", "snc"})  # DESIGN: never replicated
PREFER = ("any", "shadow", "master")


def split(urls: str | Sequence[str]) -> list[str]:
    """The base URLs of a comma-separated list (or a list), without trailing slashes."""
    parts = urls.split(",") if isinstance(urls, str) else list(urls)
    found = [part.strip().rstrip("/") for part in parts if part.strip()]
    if not found:
        raise ValueError("no instance URL given")
    return found


class Instances:
    """The instances one client talks to, and what it learnt of them."""

    def __init__(
        self, urls: str | Sequence[str], patience: float = 30.0, prefer: str = "any"
    ) -> None:
        """`prefer`: where reads go first: "any" (the first that answers), "shadow" (an
        in-sync shadow, whose GET /shadow answers 200, keeping reads off the master) or
        "master" (the writable master: read-your-writes)."""
        if prefer not in PREFER:
            raise ValueError(f"prefer must be one of {', '.join(PREFER)}, not {prefer!r}")
        self.urls = split(urls)
        self.patience = patience
        self.prefer = prefer
        self.master: str | None = None  # where the last write went
        self.reader = self.urls[0]  # where the last read was answered
        self._chosen = prefer == "any" or len(self.urls) == 1  # the reader fits `prefer`

    @property
    def tls(self) -> bool:
        """Whether any instance is reached over HTTPS: only then is a TLS context (and the CA
        bundle, some 30 ms of a CLI call's start-up) needed; certificates are always checked."""
        return any(url.lower().startswith("https://") for url in self.urls)

    def verify(self, ca_file: str | None) -> ssl.SSLContext | bool:
        """What certificates are checked against: `ca_file` (PEM, e.g. the instances' own
        self-signed certificates) when given, else the system's CAs; never unchecked."""
        if ca_file and self.tls:
            return ssl.create_default_context(cafile=ca_file)
        return self.tls

    @property
    def several(self) -> bool:
        return len(self.urls) > 1

    def find_master(self, last: str | None = None) -> Plan[str]:
        """The writable master's base URL, looked for until `patience` runs out; `last`: an
        instance that just refused as not the master, asked after the others."""
        deadline = time.monotonic() + self.patience
        while True:
            first = [self.master] if self.master else []
            rest = [u for u in self.urls if u != self.master and u != last]
            for url in first + rest + ([last] if last and last != self.master else []):
                outcome = yield Send(url, Call("GET", "/master"), PROBE)
                if isinstance(outcome, httpx.Response) and outcome.status_code == 200:
                    self.master = url
                    return url
            self.master = None
            if time.monotonic() >= deadline:
                raise ClientError(
                    503,
                    {"error": f"no writable master among {', '.join(self.urls)}", "master": None},
                )
            yield Sleep(RETRY)

    def first(self, call: Call[T]) -> Plan[T]:
        """`call` at the first instance named, whatever its role (`ha join`: the new shadow)."""
        return answer((yield Send(self.urls[0], call)))  # type: ignore[no-any-return]

    def _choose_reader(self) -> Plan[None]:
        """The instance reads go to first, as `prefer` says (the first URL when none fits)."""
        if self.prefer == "master":
            with contextlib.suppress(ClientError):  # no master now: read from any
                self.reader = yield from self.find_master()
        else:
            for url in self.urls:
                outcome = yield Send(url, Call("GET", "/shadow"), PROBE)
                if isinstance(outcome, httpx.Response) and outcome.status_code == 200:
                    self.reader = url
                    break
        self._chosen = True

    def read(self, call: Call[T]) -> Plan[T]:
        """`call` at the instance `prefer` chose (once), else the next that answers."""
        if not self._chosen:
            yield from self._choose_reader()
        order = [self.reader] + [u for u in self.urls if u != self.reader]
        outcome: Outcome = None
        first: Outcome = None
        for url in order:
            outcome = yield Send(url, call)
            # A 503 (a master that cannot vouch for what it would show now, a shadow still
            # copying its history): the next instance may answer this once; the chosen one
            # stays the reader (a 503 passes), a reader that is down does not.
            if not not_received(outcome) and not _unavailable(outcome):
                if url == order[0] or not _unavailable(first):
                    self.reader = url
                break
            first = outcome if url == order[0] else first
        return answer(outcome)  # type: ignore[no-any-return]

    def on_master(self, call: Call[T]) -> Plan[T]:
        """An HA action: at the master, following it while a refusal says this is not it."""
        if not self.several:
            return answer((yield Send(self.urls[0], call)))  # type: ignore[no-any-return]
        deadline = time.monotonic() + self.patience
        last: str | None = None
        while True:
            url = yield from self.find_master(last)
            outcome = yield Send(url, call)
            refused, named = refused_here(outcome)
            if (not_received(outcome) or refused) and time.monotonic() < deadline:
                self.master = named if named in self.urls else None
                last = url
                continue
            return answer(outcome)  # type: ignore[no-any-return]

    def _send_to_master(self, call: Call[Any]) -> Plan[tuple[str, Outcome]]:
        deadline = time.monotonic() + self.patience
        while True:
            url = yield from self.find_master()
            outcome = yield Send(url, call)
            if not not_received(outcome) or time.monotonic() >= deadline:
                return url, outcome
            self.master = None

    def write(
        self,
        kind: str,
        name: str,
        build: Callable[[int | None, bool], Call[Written]],
        guarded: bool,
        deleting: bool,
    ) -> Plan[Written]:
        """A config write: `build(if_match, create_only)` makes its request (the caller's own
        guard already in it when `guarded`); see the module's text for an unknown outcome."""
        if not self.several or kind in LOCAL_KINDS:  # a local kind belongs to the first one
            return answer((yield Send(self.urls[0], build(None, False))))  # type: ignore[no-any-return]
        request_id = str(uuid.uuid4())
        sent = time.monotonic()
        first = with_request_id(build(None, False), request_id)
        _, outcome = yield from self._send_to_master(first)
        resent = False
        for round_ in range(ROUNDS):
            conflict = None
            if isinstance(outcome, httpx.Response) and outcome.status_code not in UNKNOWN:
                if not (resent and outcome.status_code in (409, 412)):
                    return answer(outcome)  # type: ignore[no-any-return]
                conflict = outcome  # perhaps with our own first attempt, landed late: check
            if round_:
                yield Sleep(RETRY)
            try:
                found, current, failed = yield from self._look(kind, name, sent, request_id)
            except ClientError:  # no master found: what became of the write is not known
                break
            if found is not None:
                return found
            if current is None:
                outcome = failed
                continue
            if conflict is not None and guarded:
                return answer(conflict)  # type: ignore[no-any-return]  # the caller's guard said no
            version = (
                orjson.loads(current.content)["version"] if current.status_code == 200 else None
            )
            if deleting and version is None:
                return answer(current)  # type: ignore[no-any-return]  # absent, and not by us: 404
            again = (
                first if guarded else with_request_id(build(version, version is None), request_id)
            )
            _, outcome = yield from self._send_to_master(again)
            resent = True
        raise ClientError(
            503,
            {"error": f"the outcome of the write of {kind}/{name} is unknown", "master": None},
        )

    def _look(
        self, kind: str, name: str, sent: float, request_id: str
    ) -> Plan[tuple[Written | None, httpx.Response | None, Outcome]]:
        """After an unknown outcome, at the master: our write's event if it landed, the item's
        current answer (200 or 404) read before looking for it, and what failed if either
        could not be read (then the caller looks again). The events are read from a little
        before the write was first sent, by the master's clock (its Date header), not ours."""
        self.master = None
        url = yield from self.find_master()
        current = yield Send(url, Call("GET", f"/config/{kind}/{name}"))
        if not isinstance(current, httpx.Response) or current.status_code not in (200, 404):
            return None, None, current
        try:
            now = parsedate_to_datetime(current.headers["date"])
        except (KeyError, TypeError, ValueError):
            now = datetime.now(UTC)
        since = (now - timedelta(seconds=time.monotonic() - sent) - SKEW).isoformat()
        readable, found = yield from find_event(url, kind, name, since, request_id)
        if not readable:
            return None, None, None
        return found, current, None


def put_plan(
    instances: Instances,
    kind: str,
    name: str,
    value: Any,
    if_match: int | None,
    reason: str | None,
    create_only: bool,
) -> Plan[Written]:
    guarded = if_match is not None or create_only

    def build(version: int | None, absent: bool) -> Call[Written]:
        if guarded:
            return R.put(kind, name, value, if_match, reason, create_only)
        return R.put(kind, name, value, version, reason, absent and version is None)

    return instances.write(kind, name, build, guarded, deleting=False)


def delete_plan(
    instances: Instances, kind: str, name: str, if_match: int | None, reason: str | None
) -> Plan[Written]:
    def build(version: int | None, _absent: bool) -> Call[Written]:
        return R.delete(kind, name, if_match if if_match is not None else version, reason)

    return instances.write(kind, name, build, if_match is not None, deleting=True)


def _unavailable(outcome: Outcome) -> bool:
    return isinstance(outcome, httpx.Response) and outcome.status_code == 503
