"""The instance's HTTP API, as a sync `Client` and an async `AsyncClient`: every request is built
once (client.requests) and sent as a plan both drive (client.plans, client.follow), so the two
cannot drift apart."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import httpx

from shadowline.client.follow import Instances, delete_plan, put_plan
from shadowline.client.plans import Plan, arun, run
from shadowline.client.requests import PAGE, Call, R, T, _event_line, _stream_timeout, parse
from shadowline.client.types import ConfigState, Health, Item, Json, Written


class Client:
    """Sync client (the CLI's) of one instance, or of several (`url` comma-separated: writes and
    HA actions follow the writable master, see client.follow). Results are the API's JSON."""

    def __init__(
        self,
        url: str,
        user: str | None,
        password: str | None,
        timeout: float = 30.0,
        *,
        transport: httpx.BaseTransport | None = None,
        patience: float = 30.0,
        prefer: str = "any",
        ca_file: str | None = None,
    ) -> None:
        """`patience`, `prefer`: waiting for a master, where reads go (follow.Instances)."""
        auth = (user, password or "") if user else None
        self._instances = Instances(url, patience, prefer)
        self._http = httpx.Client(
            auth=auth, timeout=timeout, transport=transport, verify=self._instances.verify(ca_file)
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _do(self, plan: Plan[T]) -> T:
        return run(plan, self._http)

    def _run(self, call: Call[T]) -> T:
        return self._do(self._instances.read(call))

    def _call(self, method: str, path: str, body: Any = None) -> Json:
        return self._run(R.json(method, path, body))

    def _on_master(self, method: str, path: str, body: Any = None) -> Json:
        return self._do(self._instances.on_master(R.json(method, path, body)))

    def put(
        self,
        kind: str,
        name: str,
        value: Any,
        *,
        if_match: int | None = None,
        reason: str | None = None,
        create_only: bool = False,
    ) -> Written:
        """Create or replace an item; `if_match`: only if its current version is this;
        `create_only`: only if it does not exist (If-None-Match: *, 412 when it does)."""
        return self._do(put_plan(self._instances, kind, name, value, if_match, reason, create_only))

    def delete(
        self, kind: str, name: str, *, if_match: int | None = None, reason: str | None = None
    ) -> Written:
        return self._do(delete_plan(self._instances, kind, name, if_match, reason))

    def get(self, kind: str, name: str) -> Item:
        return self._run(R.get(kind, name))

    def state(self, *, at: int | None = None, as_of: str | None = None) -> ConfigState:
        """The configuration now, right after position `at`, or as of an ISO-8601 time."""
        return self._run(R.state(at, as_of))

    def diff(self, start: str, end: str | None = None) -> Json:
        return self._run(R.diff(start, end))

    def events(
        self, after: int = 0, limit: int = PAGE, wait: float = 0, **filters: Any
    ) -> Iterator[Json]:
        """One page of events after `after`; with `wait`, the server waits that long for one."""
        call = R.events(after, limit, wait, filters)
        with self._http.stream(
            call.method,
            self._instances.reader + call.path,
            params=call.params,
            timeout=_stream_timeout(wait),
        ) as response:
            if response.is_error:
                response.read()
                parse(response)
            for line in response.iter_lines():
                if (event := _event_line(line)) is not None:
                    yield event

    def history(self, after: int = 0, **filters: Any) -> Iterator[Json]:
        """Every event after `after` (filters: kind, name, actor, since, until), page by page."""
        while True:
            page = list(self.events(after, PAGE, **filters))
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1]["position"]

    def health(self) -> Health:
        return cast(Health, self._call("GET", "/health"))

    def ha(self) -> Json:
        return self._call("GET", "/ha")

    def ha_enable(self, auto_confirm: bool = False) -> Json:
        return self._on_master("POST", "/ha/enable", {"auto_confirm": auto_confirm})

    def ha_join(self, master_url: str, user: str, password: str) -> Json:
        body = {"master_url": master_url, "user": user, "password": password}
        return self._do(self._instances.first(R.json("POST", "/ha/join", body)))

    def ha_confirm(self, shadow: str | None = None) -> Json:
        return self._on_master("POST", "/ha/confirm", {"shadow": shadow} if shadow else {})

    def ha_remove_shadow(self) -> Json:
        return self._on_master("DELETE", "/ha/shadow")

    def ha_verify(self) -> Json:
        return self._call("GET", "/ha/verify")

    def ha_preflight(self) -> Json:
        return self._run(R.preflight())

    def ha_switch_roles(self, at: str | None = None) -> Json:
        """Switch now, or (`at`, ISO-8601 with offset) schedule the switch for then."""
        return self._on_master("POST", "/ha/switch-roles", {"at": at} if at else None)

    def ha_cancel_switch(self) -> Json:
        return self._on_master("DELETE", "/ha/switch-roles")

    def ha_maintenance(self, on: bool) -> Json:
        return self._call("POST", "/ha/maintenance", {"on": on})

    def ha_quarantine(self) -> Json:
        return self._call("GET", "/ha/quarantine")

    def audit_verify(self) -> Json:
        """The chain and the served state checked against the whole log (`ok` and findings)."""
        return self._call("GET", "/audit/verify")


class AsyncClient:
    """Async client of one instance or several; the same calls as `Client`, awaited."""

    def __init__(
        self,
        url: str,
        user: str | None,
        password: str | None,
        timeout: float = 30.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        patience: float = 30.0,
        prefer: str = "any",
        ca_file: str | None = None,
    ) -> None:
        """`transport`: e.g. httpx.ASGITransport(app) to talk to an in-process instance."""
        auth = (user, password or "") if user else None
        self._instances = Instances(url, patience, prefer)
        self._http = httpx.AsyncClient(
            auth=auth, timeout=timeout, transport=transport, verify=self._instances.verify(ca_file)
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _do(self, plan: Plan[T]) -> T:
        return await arun(plan, self._http)

    async def _run(self, call: Call[T]) -> T:
        return await self._do(self._instances.read(call))

    async def _call(self, method: str, path: str, body: Any = None) -> Json:
        return await self._run(R.json(method, path, body))

    async def _on_master(self, method: str, path: str, body: Any = None) -> Json:
        return await self._do(self._instances.on_master(R.json(method, path, body)))

    async def put(
        self,
        kind: str,
        name: str,
        value: Any,
        *,
        if_match: int | None = None,
        reason: str | None = None,
        create_only: bool = False,
    ) -> Written:
        plan = put_plan(self._instances, kind, name, value, if_match, reason, create_only)
        return await self._do(plan)

    async def delete(
        self, kind: str, name: str, *, if_match: int | None = None, reason: str | None = None
    ) -> Written:
        return await self._do(delete_plan(self._instances, kind, name, if_match, reason))

    async def get(self, kind: str, name: str) -> Item:
        return await self._run(R.get(kind, name))

    async def state(self, *, at: int | None = None, as_of: str | None = None) -> ConfigState:
        return await self._run(R.state(at, as_of))

    async def diff(self, start: str, end: str | None = None) -> Json:
        return await self._run(R.diff(start, end))

    async def events(
        self, after: int = 0, limit: int = PAGE, wait: float = 0, **filters: Any
    ) -> AsyncIterator[Json]:
        call = R.events(after, limit, wait, filters)
        async with self._http.stream(
            call.method,
            self._instances.reader + call.path,
            params=call.params,
            timeout=_stream_timeout(wait),
        ) as response:
            if response.is_error:
                await response.aread()
                parse(response)
            async for line in response.aiter_lines():
                if (event := _event_line(line)) is not None:
                    yield event

    async def history(self, after: int = 0, **filters: Any) -> AsyncIterator[Json]:
        while True:
            page = [event async for event in self.events(after, PAGE, **filters)]
            for event in page:
                yield event
            if len(page) < PAGE:
                return
            after = page[-1]["position"]

    async def health(self) -> Health:
        return cast(Health, await self._call("GET", "/health"))

    async def ha(self) -> Json:
        return await self._call("GET", "/ha")

    async def ha_enable(self, auto_confirm: bool = False) -> Json:
        return await self._on_master("POST", "/ha/enable", {"auto_confirm": auto_confirm})

    async def ha_join(self, master_url: str, user: str, password: str) -> Json:
        body = {"master_url": master_url, "user": user, "password": password}
        return await self._do(self._instances.first(R.json("POST", "/ha/join", body)))

    async def ha_confirm(self, shadow: str | None = None) -> Json:
        return await self._on_master("POST", "/ha/confirm", {"shadow": shadow} if shadow else {})

    async def ha_remove_shadow(self) -> Json:
        return await self._on_master("DELETE", "/ha/shadow")

    async def ha_verify(self) -> Json:
        return await self._call("GET", "/ha/verify")

    async def ha_preflight(self) -> Json:
        return await self._run(R.preflight())

    async def ha_switch_roles(self, at: str | None = None) -> Json:
        return await self._on_master("POST", "/ha/switch-roles", {"at": at} if at else None)

    async def ha_cancel_switch(self) -> Json:
        return await self._on_master("DELETE", "/ha/switch-roles")

    async def ha_maintenance(self, on: bool) -> Json:
        return await self._call("POST", "/ha/maintenance", {"on": on})

    async def ha_quarantine(self) -> Json:
        return await self._call("GET", "/ha/quarantine")

    async def audit_verify(self) -> Json:
        return await self._call("GET", "/audit/verify")
