"""`shadowline watch`: the cluster's monitoring stream, for a person, readable and coloured."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from shadowline.cli.common import EXIT_UNAVAILABLE, EXIT_USAGE, examples, fail, run

EXAMPLES = examples(
    "shadowline watch --cluster demo --heartbeats",
    "shadowline watch --cluster prod --json | jq 'select(.routing_key | startswith(\"alert.\"))'",
    "shadowline watch --cluster prod --count 1 --json     # wait for the next message",
)

if TYPE_CHECKING:
    from aio_pika.abc import AbstractIncomingMessage

COLOURS = {
    "alert": typer.colors.RED,
    "failover": typer.colors.YELLOW,
    "role": typer.colors.CYAN,
    "config": typer.colors.GREEN,
    "heartbeat": typer.colors.BRIGHT_BLACK,
}
ANNOUNCEMENT = "failover.watchdog"  # each watchdog's view, every takeover delay: not an event


class Announcements:
    """Which watchdog announcements a person needs to see: a watchdog repeats its view every
    takeover delay, so only a change of what it says (its phase, the master it sees) is shown,
    and the first one of each watchdog."""

    def __init__(self) -> None:
        self._said: dict[str, tuple[Any, Any]] = {}

    def news(self, body: dict[str, Any]) -> bool:
        name = str(body.get("watchdog"))
        said = (body.get("phase"), body.get("master"))
        if self._said.get(name) == said:
            return False
        self._said[name] = said
        return True


def describe(routing_key: str, body: dict[str, Any]) -> str:
    """One line per message: what a person wants to read first."""
    kind = routing_key.split(".", 1)[0]
    who = body.get("instance") or body.get("watchdog") or ""
    if kind == "heartbeat":
        return (
            f"{who} {body.get('role')} e{body.get('epoch')} @{body.get('committed')} "
            f"{body.get('replication') or ''} peer={body.get('peer') or '-'}"
        )
    if kind == "config":
        return f"{who} +{body.get('count')} changes, positions {body.get('from_position')}..{body.get('to_position')}"
    if kind == "alert":
        resolved = " resolved" if body.get("state") == "resolved" else ""  # older: no state
        return f"{who} {body.get('alert')}{resolved}: {body.get('message')}"
    if routing_key == ANNOUNCEMENT and "phase" in body:
        master = body.get("master")
        sees = f"master {master} in epoch {body.get('epoch')}" if master else "no master"
        paused = " (maintenance: automatic failover paused)" if body.get("maintenance") else ""
        return f"{who} {body.get('phase')}: sees {sees}{paused}"
    return f"{who} {body.get('sentence') or orjson.dumps(body).decode()}"


def _print(key: str, body: dict[str, Any], as_json: bool, announcements: Announcements) -> bool:
    """Print one message (as JSON, or a line for a person); False if it is not worth a line."""
    if as_json:
        typer.echo(orjson.dumps({"routing_key": key, "body": body}).decode())
        return True
    if key == ANNOUNCEMENT and not announcements.news(body):
        return False
    stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
    colour = COLOURS.get(key.split(".", 1)[0], typer.colors.WHITE)
    typer.secho(f"{stamp} {key:<28} {describe(key, body)}", fg=colour)
    return True


async def _watch(
    url: str, cluster: str, heartbeats: bool, as_json: bool, limit: int | None
) -> None:
    # asyncio and aio-pika only when watching: every other command starts without them.
    import asyncio

    from aiormq.exceptions import ChannelNotFoundEntity

    from shadowline.adapters.amqp_nodes import connect_robust
    from shadowline.adapters.broker import Names

    # Robust, over every node listed: a lost node is left for the next, the queue bound again.
    connection = await connect_robust(url, "shadowline watch")
    seen = 0
    done = asyncio.Event()
    announcements = Announcements()
    async with connection:
        while True:  # the cluster's instances declare the exchange; it may not exist yet
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            try:
                await queue.bind(Names(cluster).monitoring, "#")
                break
            except ChannelNotFoundEntity:
                typer.secho(
                    f"waiting for cluster {cluster!r} to declare its exchanges ...", err=True
                )
                await asyncio.sleep(1)

        async def show(message: AbstractIncomingMessage) -> None:
            nonlocal seen
            key = message.routing_key or ""
            if key.startswith("heartbeat.") and not heartbeats:
                return
            try:
                body = orjson.loads(message.body)
            except orjson.JSONDecodeError:
                body = {"raw": message.body[:200].decode(errors="replace")}
            if not _print(key, body, as_json, announcements):
                return  # a watchdog's view again: not counted
            seen += 1
            if limit is not None and seen >= limit:
                done.set()

        await queue.consume(show, no_ack=True)
        await done.wait()


def watch(
    cluster: Annotated[
        str, typer.Option(envvar="SHADOWLINE_CLUSTER", help="The cluster.")
    ] = "default",
    amqp_url: Annotated[
        str,
        typer.Option(
            envvar="SHADOWLINE_AMQP_URL",
            help="The broker (a monitoring user suffices); several nodes comma-separated.",
        ),
    ] = "amqp://guest:guest@127.0.0.1:5672/",
    heartbeats: Annotated[bool, typer.Option("--heartbeats", help="Show heartbeats too.")] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="One JSON object a line (NDJSON): routing_key and body."),
    ] = False,
    count: Annotated[int | None, typer.Option(help="Stop after this many messages.")] = None,
) -> None:
    """Print the cluster's monitoring stream: role changes, failover steps, alerts, changes.

    A watchdog's view, repeated every few seconds, is shown when it changes; --json shows all.

    Ctrl-C ends it (exit 0).
    """
    try:
        run(_watch(amqp_url, cluster, heartbeats, as_json, count))
    except KeyboardInterrupt:
        pass
    except OSError as error:
        fail(f"cannot reach RabbitMQ: {error}", EXIT_UNAVAILABLE)
    except ValueError as error:  # the URL list (it names no password)
        fail(f"--amqp-url: {error}", EXIT_USAGE)
