"""Secrets masked out of URLs, for the settings a service logs at start-up."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_QUERY_KEYS = frozenset({"password", "passwd", "sslpassword"})


def masked_url(url: str) -> str:
    """The URL with its password (in the user part or the query) replaced by ***. Parsed with
    the standard library: settings are read by every layer, and the application layer may not
    depend on SQLAlchemy (pyproject's import-linter contracts)."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    netloc = f"{user}:***@{hostport}" if at and colon else parts.netloc
    query = [
        (k, "***" if k.lower() in SECRET_QUERY_KEYS else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))
