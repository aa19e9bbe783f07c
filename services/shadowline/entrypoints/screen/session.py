"""Who is looking at the HA screen: signed session cookies, HTTP Basic, CSRF tokens, origins.

The key that signs sessions, flash messages and CSRF tokens is random per process (not derived
from SHADOWLINE_CLUSTER_SECRET): nothing to configure, nothing that outlives the process, and a
leaked cluster secret (which travels to every instance and watchdog) forges no screen session.
The price is that a restart logs everybody out, which an admin screen can afford.

A session names its user, and every request looks that user up again in the users the
authenticator refreshes every second: a removed user, a changed role or a changed password
(the session carries a keyed fingerprint of the password hash) takes effect within a second.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.responses import Response

from shadowline.application.auth import RANK, Authenticator
from shadowline.domain.errors import Forbidden, Unauthorized
from shadowline.domain.users import User
from shadowline.entrypoints.web import normal_origin, origin_of_url, source_of

SESSION_SECONDS = 8 * 3600  # one working day; absolute, not sliding
FLASH_SECONDS = 60


class LoginRequired(Unauthorized):
    """Raised when a screen page is asked for without a valid session or credentials."""


class ScreenRefused(Forbidden):
    """Raised when a screen request is refused (403, as an HTML page): a role too low."""


class CsrfRefused(ScreenRefused):
    """Raised when a screen form arrives without its token, with a wrong one, or cross-origin."""


@dataclass(frozen=True, slots=True)
class ScreenUser:
    """The user of a screen request, and the CSRF token its forms must carry."""

    user: User
    csrf: str
    via: str  # "session" or "basic"

    def may(self, role: str) -> bool:
        return RANK[self.user.role] >= RANK[role]


class Signer:
    """HMAC-SHA256 over small JSON documents, with a random per-process key."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def mac(self, purpose: str, text: str) -> str:
        digest = hmac.digest(self._key, f"{purpose}\n{text}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, purpose: str, doc: dict[str, Any]) -> str:
        payload = base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")
        return f"{payload}.{self.mac(purpose, payload)}"

    def open(self, purpose: str, token: str | None) -> dict[str, Any] | None:
        """The signed document, or None when the token is missing, malformed or forged."""
        if not token or token.count(".") != 1:
            return None
        payload, mac = token.split(".")
        if not hmac.compare_digest(mac, self.mac(purpose, payload)):
            return None
        try:
            doc = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, orjson.JSONDecodeError):
            return None
        return doc if isinstance(doc, dict) else None


class Sessions:
    def __init__(
        self, auth: Authenticator, instance: str, public_url: str, signer: Signer | None = None
    ) -> None:
        self._auth = auth
        self._signer = signer or Signer()
        # Behind a TLS-terminating proxy the browser's origin is the advertised URL's, not the
        # scheme and host this process sees.
        self._public_origin = origin_of_url(public_url)
        # Cookies are per host, not per port: master and shadow on one host (the demo, the
        # tests, an operator's two tabs) would overwrite each other's cookie under one name.
        # Instance names hold no '.', so no instance's cookie name is another's.
        self.cookie = f"shadowline.session.{instance}"
        self.flash_cookie = f"shadowline.flash.{instance}"
        self._ended: dict[str, int] = {}  # sessions logged out (id -> expiry): a copied cookie

    def _fingerprint(self, user: User) -> str:
        return self._signer.mac("password", user.password_hash)[:16]

    # -- logging in and out ----------------------------------------------------------------------

    async def login(self, name: str, password: str, source: str) -> User:
        """Check a login form with the same argon2 users (and cache) that HTTP Basic uses, and
        the same count of failures per source address."""
        # Built as a Basic header so the one authenticate() (its cache, its refusals) decides;
        # a name with ':' cannot be a Basic user either.
        raw = base64.b64encode(f"{name}:{password}".encode()).decode()
        return await self._auth.authenticate(f"Basic {raw}", "viewer", source)

    def start(self, response: Response, user: User, secure: bool) -> None:
        doc = {
            "u": user.name,
            "sid": secrets.token_urlsafe(18),
            "exp": int(time.time()) + SESSION_SECONDS,
            "pw": self._fingerprint(user),
        }
        response.set_cookie(
            self.cookie,
            self._signer.sign("session", doc),
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure,
        )

    def end(self, request: Request, response: Response) -> None:
        """Log out: the cookie goes, and its session stays refused until it would expire."""
        doc = self._signer.open("session", request.cookies.get(self.cookie))
        if doc is not None and isinstance(doc.get("exp"), int):
            now = time.time()
            self._ended = {sid: exp for sid, exp in self._ended.items() if exp >= now}
            self._ended[str(doc.get("sid"))] = doc["exp"]
        response.delete_cookie(self.cookie, path="/", httponly=True, samesite="strict")

    # -- each request ----------------------------------------------------------------------------

    async def viewer(self, request: Request, needs: str) -> ScreenUser:
        """The user of this request (Basic credentials first, else the session), holding at
        least role `needs`: else LoginRequired (401 / to /login) or Forbidden (403)."""
        header = request.headers.get("authorization")
        if header:
            user = await self._auth.authenticate(header, needs, source_of(request))
            return ScreenUser(user, self._signer.mac("csrf-basic", user.name), "basic")
        doc = self._signer.open("session", request.cookies.get(self.cookie))
        if doc is None or not isinstance(doc.get("exp"), int) or doc["exp"] < time.time():
            raise LoginRequired("log in first")
        if str(doc.get("sid")) in self._ended:
            raise LoginRequired("logged out")
        current = self._auth.user(str(doc.get("u")))
        if current is None or doc.get("pw") != self._fingerprint(current):
            raise LoginRequired("the session's user no longer exists or changed password")
        if RANK[current.role] < RANK[needs]:
            raise Forbidden(f"role {current.role!r} may not do this (needs {needs!r})")
        return ScreenUser(current, self._signer.mac("csrf-session", str(doc.get("sid"))), "session")

    def secure(self, request: Request) -> bool:
        """Whether the session cookie must be Secure: behind a TLS-terminating proxy this
        process sees http, but the advertised URL people use says https."""
        return self._public_origin.startswith("https:") or own_origin(request).startswith("https:")

    def origins(self, request: Request) -> set[str]:
        """The origins this instance's own pages are served from."""
        return {own_origin(request), self._public_origin}

    def check_form(self, request: Request, viewer: ScreenUser | None, form: dict[str, str]) -> None:
        """Refuse a screen form from another origin, or (when logged in) without its token."""
        check_origin(request, self.origins(request))
        if viewer is not None and not hmac.compare_digest(form.get("csrf", ""), viewer.csrf):
            raise CsrfRefused("missing or wrong CSRF token: reload the page and try again")

    # -- flash messages across a redirect --------------------------------------------------------

    def flash(self, response: Response, ok: bool, text: str) -> None:
        doc = {"ok": ok, "text": text[:600], "exp": int(time.time()) + FLASH_SECONDS}
        response.set_cookie(
            self.flash_cookie,
            self._signer.sign("flash", doc),
            max_age=FLASH_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
        )

    def read_flash(self, request: Request) -> dict[str, Any] | None:
        """The flash message set by the last action (signed, so no page can plant one)."""
        doc = self._signer.open("flash", request.cookies.get(self.flash_cookie))
        if doc is None or not isinstance(doc.get("exp"), int) or doc["exp"] < time.time():
            return None
        return {"ok": bool(doc.get("ok")), "text": str(doc.get("text", ""))}

    def clear_flash(self, request: Request, response: Response) -> None:
        if self.flash_cookie in request.cookies:
            response.delete_cookie(self.flash_cookie, path="/", httponly=True, samesite="strict")


def own_origin(request: Request) -> str:
    return normal_origin(request.url.scheme, request.url.netloc)


def check_origin(request: Request, allowed: set[str]) -> None:
    """Refuse a form posted from another site: by its Origin (or, without one, its Referer),
    and by Sec-Fetch-Site where the browser sends it."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise CsrfRefused("cross-site request refused")
    origin = request.headers.get("origin")
    if origin is None and (referer := request.headers.get("referer")):
        origin = origin_of_url(referer)
    if origin is not None and origin_of_url(origin) not in allowed:
        raise CsrfRefused(f"cross-origin request refused (origin {origin[:100]!r})")


def sessions(request: Request) -> Sessions:
    found: Sessions = request.app.state.screen
    return found


async def user_of(request: Request, needs: str) -> ScreenUser:
    """The screen's user holding `needs`; a role too low is the screen's 403 page."""
    try:
        return await sessions(request).viewer(request, needs)
    except ScreenRefused:
        raise
    except Forbidden as error:
        raise ScreenRefused(str(error)) from error


async def _viewer(request: Request) -> ScreenUser:
    return await user_of(request, "viewer")


async def _admin(request: Request) -> ScreenUser:
    return await user_of(request, "admin")


async def _auditor(request: Request) -> ScreenUser:
    return await user_of(request, "auditor")


# The screen's typed dependencies: its sessions, and its user holding at least a role.
ScreenSessions = Annotated[Sessions, Depends(sessions)]
ScreenViewer = Annotated[ScreenUser, Depends(_viewer)]
ScreenAdmin = Annotated[ScreenUser, Depends(_admin)]
ScreenAuditor = Annotated[ScreenUser, Depends(_auditor)]
