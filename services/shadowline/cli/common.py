"""What every command shares: logging, settings loading, client options and output."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import orjson
import typer

from shadowline.cli.markup import escape
from shadowline.client.types import ClientError

# Imported when a command uses them: Settings (pydantic-settings) only the services and tools
# need, Client (httpx) only the client commands, and `--help` neither (start-up, issue 13).
if TYPE_CHECKING:
    from shadowline.client.http import Client
    from shadowline.settings import Settings

T = TypeVar("T")


class ExitCode(IntEnum):
    """The one table of exit codes (README and `shadowline --help` print it from here).

    0-3 are documented since the first release and stay as they are: scripts test them.
    """

    OK = 0
    REFUSED = 1
    USAGE = 2
    UNAVAILABLE = 3
    TIMEOUT = 4
    INTERRUPTED = 130


EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done",
    ExitCode.REFUSED: "refused (4xx: 401, 403, 404, 409, 422), or a check failed "
    "(ha verify, ha preflight, audit verify)",
    ExitCode.USAGE: "bad usage or settings (option, argument, URL), database unreachable",
    ExitCode.UNAVAILABLE: "instance or broker unreachable, timed out or failing (5xx, 503)",
    ExitCode.TIMEOUT: "--wait ran out of time (the shadow was not in sync before --timeout)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C, or the reader of a pipe went away)",
}

# The names the commands used before the table existed.
EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = ExitCode.REFUSED, ExitCode.USAGE, ExitCode.UNAVAILABLE
EXIT_TIMEOUT, EXIT_INTERRUPTED = ExitCode.TIMEOUT, ExitCode.INTERRUPTED


def _flags_show_no_type() -> None:
    """Typer (0.29) prints `<bool>` in the type column of every flag (--version, --json, --help),
    as if it took a value; a flag takes none, so its column is left empty. Typer has no setting
    for it and makes its options itself, so its one method that says so is replaced, once."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "shadowline", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag and self.metavar is None else shown(self, ctx)

    display_type_rich.shadowline = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_type()

Url = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="SHADOWLINE_URL",
        help="The instance's URL; or both instances' URLs, comma-separated: writes and HA "
        "actions then go to whichever is master.",
    ),
]
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
    from pydantic import ValidationError

    from shadowline.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        problems = "; ".join(
            f"SHADOWLINE_{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: {e['msg']}"
            for e in error.errors()
        )
        fail(f"invalid settings: {problems}")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    import asyncio

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


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def with_scheme(url: str) -> str:
    """`localhost:8081` as http://localhost:8081 (each URL of a comma-separated list): a
    browser's and curl's reading, where httpx would refuse the host as a scheme."""
    parts = [part.strip() for part in url.split(",")]
    return ",".join(p if not p or _SCHEME.match(p) else f"http://{p}" for p in parts)


Prefer = Annotated[
    str,
    typer.Option(
        "--prefer",
        envvar="SHADOWLINE_PREFER",
        help="With several URLs, where the read goes first: any (the first that answers), "
        "shadow (an in-sync shadow, sparing the master) or master (read your own writes).",
    ),
]


def client(url: str, user: str, password: str | None, prefer: str = "any") -> Client:
    from shadowline.client.http import Client

    try:
        # SHADOWLINE_CA_FILE: the certificates an https instance is checked against (its own
        # self-signed one, or a private CA), else the system's CAs.
        ca_file = os.environ.get("SHADOWLINE_CA_FILE") or None
        return Client(with_scheme(url), user, password, prefer=prefer, ca_file=ca_file)
    except ValueError as error:  # --prefer not one of any, shadow, master
        fail(str(error), EXIT_USAGE)


def _where(error: Exception) -> str:
    """The instance a failed request went to (scheme, host and port), when httpx knows it."""
    try:
        url = error.request.url  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # RuntimeError: an error raised before a request
        return "the instance"
    return f"the instance at {url.scheme}://{url.netloc.decode('ascii', 'replace')}"


@contextmanager
def reported() -> Iterator[None]:
    """Turn a failed call into one line on stderr and the exit code of the table."""
    import httpx

    try:
        yield
    except ClientError as error:
        body = error.body if isinstance(error.body, dict) else {}
        details = "".join(f"\n  {e['path']}: {e['message']}" for e in body.get("errors", []))
        if body.get("master"):
            details += f"\n  the master is {body['master']}"
        fail(f"{error}{details}", EXIT_REFUSED if error.status < 500 else EXIT_UNAVAILABLE)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
        fail(f"bad URL: {error}", EXIT_USAGE)
    except httpx.HTTPError as error:
        fail(f"cannot reach {_where(error)}: {error or type(error).__name__}", EXIT_UNAVAILABLE)
    except orjson.JSONDecodeError:
        # A proxy's error page, or not a shadowline instance at all.
        fail("the URL answered with something that is not JSON", EXIT_UNAVAILABLE)


def call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one client call; its failure ends the command with the table's exit code."""
    with reported():
        return function(*args, **kwargs)


def examples(*lines: str) -> str:
    """A command's `--help` epilog: an Examples block, one command (or # comment) a line.

    Typer renders help with Rich markup: text is escaped so that JSON in an example stays
    literal, and single line breaks survive (a paragraph is not reflowed).
    """
    shown = [
        f"[dim]{escape(line)}[/dim]" if line.startswith("#") else escape(line) for line in lines
    ]
    return "\n".join(["[bold]Examples[/bold]", *shown])


def exit_codes_help() -> str:
    rows = [f"  {int(code):>3}  {escape(meaning)}" for code, meaning in EXIT_MEANINGS.items()]
    return "\n".join(["[bold]Exit codes[/bold]", *rows])
