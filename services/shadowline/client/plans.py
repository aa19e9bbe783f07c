"""Requests as plans (sans-IO): a plan is a generator that yields what to send (`Send`) or how
long to wait (`Sleep`) and is sent back what came of it (an httpx.Response, or the
httpx.TransportError raised); `run` and `arun` drive one with a sync or an async httpx client,
so the sync and async clients share every plan (client.follow) and cannot drift apart."""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx
import orjson

from shadowline.client.requests import PAGE, Call, parse
from shadowline.client.types import Json, Written

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Send:
    url: str  # the instance's base URL
    call: Call[Any]
    timeout: float | None = None  # None: the client's own


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Outcome = httpx.Response | httpx.TransportError | None
Plan = Generator[Send | Sleep, Outcome, T]


def _request_args(step: Send) -> dict[str, Any]:
    given = step.timeout if step.timeout is not None else step.call.timeout
    timeout = given if given is not None else httpx.USE_CLIENT_DEFAULT
    return {"timeout": timeout, **step.call.send_args()}


def run(plan: Plan[T], http: httpx.Client) -> T:
    """Drive `plan` with a sync httpx client."""
    outcome: Outcome = None
    try:
        step = next(plan)
        while True:
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                outcome = None
            else:
                try:
                    outcome = http.request(
                        step.call.method, step.url + step.call.path, **_request_args(step)
                    )
                except httpx.TransportError as error:
                    outcome = error
            step = plan.send(outcome)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def arun(plan: Plan[T], http: httpx.AsyncClient) -> T:
    """Drive `plan` with an async httpx client."""
    import asyncio  # here: the CLI's sync client starts without it

    outcome: Outcome = None
    try:
        step = next(plan)
        while True:
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                outcome = None
            else:
                try:
                    outcome = await http.request(
                        step.call.method, step.url + step.call.path, **_request_args(step)
                    )
                except httpx.TransportError as error:
                    outcome = error
            step = plan.send(outcome)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def not_received(outcome: Outcome) -> bool:
    """Whether the request certainly never reached the instance (so sending it again is safe)."""
    return isinstance(outcome, httpx.ConnectError | httpx.ConnectTimeout)


def answer(outcome: Outcome) -> Any:
    if isinstance(outcome, httpx.TransportError):
        raise outcome
    assert isinstance(outcome, httpx.Response)
    return parse(outcome)


def refused_here(outcome: Outcome) -> tuple[bool, str | None]:
    """Whether this instance refused because it is not (or no longer) the master, and the
    master its refusal names: a 409 that names one, or a 503 "may not write" (`master` field,
    no Retry-After). A 503 with Retry-After is "unavailable, the outcome unknown" (the database
    failed mid-way): never a refusal, since what it refused may have been done."""
    if not isinstance(outcome, httpx.Response) or outcome.status_code not in (409, 503):
        return False, None
    if outcome.status_code == 503 and "retry-after" in outcome.headers:
        return False, None
    try:
        body = orjson.loads(outcome.content)
    except orjson.JSONDecodeError:
        return False, None
    named = body.get("master") if isinstance(body, dict) else None
    if outcome.status_code == 409 and not isinstance(named, str):
        return False, None  # a 409 of the state itself (no shadow to switch with, ...)
    if not isinstance(body, dict) or "master" not in body:
        return False, None
    return True, named.rstrip("/") if isinstance(named, str) else None


def with_request_id(call: Call[T], request_id: str) -> Call[T]:
    return replace(call, headers={**call.headers, "X-Request-Id": request_id})


def find_event(
    url: str, kind: str, name: str, since: str, request_id: str
) -> Plan[tuple[bool, Written | None]]:
    """Whether the item's events could be read, and the one that carries `request_id` (the
    write's answer) if there is one."""
    after = 0
    while True:  # page by page: an item written often has more than a page since then
        params = {"after": after, "limit": PAGE, "kind": kind, "name": name, "since": since}
        outcome = yield Send(url, Call("GET", "/events", params=params))
        if not isinstance(outcome, httpx.Response) or outcome.is_error:
            return False, None
        page: list[Json] = [orjson.loads(line) for line in outcome.content.splitlines() if line]
        for event in page:
            if (event.get("metadata") or {}).get("request_id") == request_id:
                found = Written(
                    kind=event["kind"],
                    name=event["name"],
                    version=event["version"],
                    position=event["position"],
                    epoch=event["epoch"],
                )
                return True, found
        if len(page) < PAGE:
            return True, None
        after = page[-1]["position"]
