"""A small typed client of an instance's HTTP API, used by the CLI and by scripts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson


class ClientError(Exception):
    """Raised when the instance answers with an error status; carries the status and body."""

    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body
        message = body.get("error") if isinstance(body, dict) else None
        super().__init__(f"HTTP {status}: {message or body}")


class Client:
    def __init__(
        self, url: str, user: str | None, password: str | None, timeout: float = 30.0
    ) -> None:
        auth = (user, password or "") if user else None
        self._http = httpx.Client(base_url=url.rstrip("/"), auth=auth, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        body = orjson.loads(response.content) if response.content else None
        if response.is_error:
            raise ClientError(response.status_code, body)
        return body

    def put(
        self,
        kind: str,
        name: str,
        value: Any,
        *,
        if_match: int | None = None,
        reason: str | None = None,
    ) -> Any:
        headers = {"Content-Type": "application/json"}
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        if reason:
            headers["X-Reason"] = reason
        return self._call(
            "PUT", f"/config/{kind}/{name}", content=orjson.dumps(value), headers=headers
        )

    def delete(
        self, kind: str, name: str, *, if_match: int | None = None, reason: str | None = None
    ) -> Any:
        headers = {}
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        if reason:
            headers["X-Reason"] = reason
        return self._call("DELETE", f"/config/{kind}/{name}", headers=headers)

    def get(self, kind: str, name: str) -> Any:
        return self._call("GET", f"/config/{kind}/{name}")

    def state(self, *, at: int | None = None, as_of: str | None = None) -> Any:
        params: dict[str, Any] = {}
        if at is not None:
            params["at"] = at
        if as_of is not None:
            params["as_of"] = as_of
        return self._call("GET", "/config", params=params)

    def diff(self, start: str, end: str | None = None) -> Any:
        params = {"from": start} | ({"to": end} if end else {})
        return self._call("GET", "/config/diff", params=params)

    def ha(self) -> Any:
        return self._call("GET", "/ha")

    def ha_enable(self, auto_confirm: bool = False) -> Any:
        return self._call("POST", "/ha/enable", json={"auto_confirm": auto_confirm})

    def ha_join(self, master_url: str, user: str, password: str) -> Any:
        body = {"master_url": master_url, "user": user, "password": password}
        return self._call("POST", "/ha/join", json=body)

    def ha_confirm(self, shadow: str | None = None) -> Any:
        return self._call("POST", "/ha/confirm", json={"shadow": shadow} if shadow else {})

    def ha_remove_shadow(self) -> Any:
        return self._call("DELETE", "/ha/shadow")

    def ha_verify(self) -> Any:
        return self._call("GET", "/ha/verify")

    def ha_switch_roles(self) -> Any:
        return self._call("POST", "/ha/switch-roles")

    def ha_maintenance(self, on: bool) -> Any:
        return self._call("POST", "/ha/maintenance", json={"on": on})

    def ha_quarantine(self) -> Any:
        return self._call("GET", "/ha/quarantine")

    def health(self) -> Any:
        return self._call("GET", "/health")

    def events(
        self, after: int = 0, limit: int = 1000, wait: float = 0, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        params = {
            "after": after,
            "limit": limit,
            **{k: v for k, v in filters.items() if v is not None},
        }
        if wait:
            params["wait"] = wait
        timeout = httpx.Timeout(wait + 30)
        with self._http.stream("GET", "/events", params=params, timeout=timeout) as response:
            if response.is_error:
                response.read()
                raise ClientError(response.status_code, orjson.loads(response.content or b"null"))
            for line in response.iter_lines():
                if line:
                    yield orjson.loads(line)
