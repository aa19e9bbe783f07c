"""Requests as plans (sans-IO): a plan is a generator that yields what to send (`Send`) or how
long to wait (`Sleep`) and is sent back what came of it (an httpx.Response, or the
httpx.TransportError raised); `run` and `arun` drive one with a sync or an async httpx client,
so the sync and async clients share every plan (client.follow) and cannot drift apart."""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from shadowline.client.requests import Call

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
    timeout = step.timeout if step.timeout is not None else httpx.USE_CLIENT_DEFAULT
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
