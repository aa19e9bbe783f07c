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
    return f"{who} {body.get('sentence') or orjson.dumps(body).decode()}"


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
            if as_json:
                typer.echo(orjson.dumps({"routing_key": key, "body": body}).decode())
            else:
                stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
                colour = COLOURS.get(key.split(".", 1)[0], typer.colors.WHITE)
                typer.secho(f"{stamp} {key:<28} {describe(key, body)}", fg=colour)
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
