"""What every command shares: logging, settings loading, client options and output."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from pydantic import ValidationError

from shadowline.client import Client, ClientError
from shadowline.settings import Settings

T = TypeVar("T")

# Exit codes (documented in the README): 0 done; 1 the instance refused the request (4xx);
# 2 bad usage or settings, or the database is unreachable; 3 the instance is unreachable or
# failed (5xx).
EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3

Url = Annotated[str, typer.Option("--url", envvar="SHADOWLINE_URL", help="The instance's URL.")]
User = Annotated[
    str, typer.Option("--user", envvar="SHADOWLINE_USER", help="A user of that instance.")
]
Password = Annotated[
    str | None, typer.Option("--password", envvar="SHADOWLINE_PASSWORD", help="Its password.")
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DEFAULT_URL = "http://127.0.0.1:8080"


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # Request lines of the peer client and broker chatter are noise at INFO.
    for chatty in ("httpx", "aiormq", "aio_pika"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.secho(f"shadowline: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        problems = "; ".join(
            f"SHADOWLINE_{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: {e['msg']}"
            for e in error.errors()
        )
        fail(f"invalid settings: {problems}")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def emit(doc: Any, as_json: bool, text: str | None = None) -> None:
    if as_json or text is None:
        typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
    else:
        typer.echo(text)


def client(url: str, user: str, password: str | None) -> Client:
    return Client(url, user, password)


def call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one client call and turn its failure into a one-line error and an exit code."""
    import httpx

    try:
        return function(*args, **kwargs)
    except ClientError as error:
        body = error.body if isinstance(error.body, dict) else {}
        details = "".join(f"\n  {e['path']}: {e['message']}" for e in body.get("errors", []))
        if body.get("master"):
            details += f"\n  the master is {body['master']}"
        fail(f"{error}{details}", EXIT_REFUSED if error.status < 500 else EXIT_UNAVAILABLE)
    except httpx.HTTPError as error:
        fail(f"cannot reach the instance: {error}", EXIT_UNAVAILABLE)
