"""Would a failover succeed now? The checks of what is measured by reaching out (GET
/ha/preflight, gathered by application.preflight): the clocks, the peer's software, the broker
nodes and the peer's HTTP. Pure, as domain.preflight, whose `Check` they return."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from shadowline.domain import signing
from shadowline.domain.ha import handshake_problem
from shadowline.domain.preflight import Check, ms

# Clocks may differ by half the signed-command window: a promote the watchdog signs is then
# still fresh by the shadow's clock, with the other half left for the estimates' error, the
# command's way (signed after a probe of up to a takeover delay) and drift until a failover.
CLOCK_LIMIT: Final = signing.WINDOW / 2


# -- the clocks ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offset:
    """Another process's clock minus ours, as estimated: `seconds` (None: not known), `how`."""

    who: str
    seconds: float | None
    how: str


def clock_check(offsets: Sequence[Offset], limit: float = CLOCK_LIMIT) -> Check:
    unknown = [o for o in offsets if o.seconds is None]
    if unknown:
        names = ", ".join(f"{o.who} ({o.how})" for o in unknown)
        return Check("clocks", False, f"clock of {names} not known: no way to tell the skew")
    values = [0.0, *(o.seconds for o in offsets if o.seconds is not None)]
    spread = max(values) - min(values)
    shown = "; ".join(f"{o.who} {o.seconds:+.3f} s ({o.how})" for o in offsets)
    said = f"against this instance's clock: {shown}" if offsets else "no other clock to compare"
    if spread > limit:
        return Check(
            "clocks",
            False,
            f"clocks differ by {spread:.1f} s, more than {limit:g} s (half the "
            f"{signing.WINDOW:.0f} s window of signed commands): {said}; synchronise them (NTP)",
        )
    return Check("clocks", True, f"clocks within {spread:.3f} s (limit {limit:g} s): {said}")


# -- the same software ---------------------------------------------------------------------------


def version_check(
    on_master: bool, ours: tuple[str, str | None], theirs: tuple[str, str | None] | None
) -> Check:
    if theirs is None:
        return Check(
            "version",
            False,
            "the peer's version and schema revision are not known: its signed call failed "
            "(see the peer-probes check)",
        )
    master, shadow = (ours, theirs) if on_master else (theirs, ours)
    problem = handshake_problem(master[0], master[1], shadow[0], shadow[1])
    if problem:
        return Check("version", False, problem)
    return Check("version", True, f"master and shadow run shadowline {ours[0]} (schema {ours[1]})")


# -- the broker ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeAnswer:
    node: str  # host:port
    seconds: float
    error: str | None


def broker_check(nodes: Sequence[NodeAnswer]) -> Check:
    """Every node listed answers an AMQP connection: with one down the broker still works,
    but the next fault may stop it; the operator is told which."""
    down = [n for n in nodes if n.error is not None]
    if down:
        said = "; ".join(f"{n.node}: {n.error}" for n in down)
        return Check(
            "broker",
            False,
            f"{len(down)} of {len(nodes)} RabbitMQ nodes did not answer ({said}): "
            "bring them back before relying on a failover",
        )
    shown = ", ".join(f"{n.node} {ms(n.seconds)} ms" for n in nodes)
    return Check("broker", True, f"all {len(nodes)} RabbitMQ node(s) answered: {shown}")


# -- the peer's HTTP -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    """One signed call of the peer: its latency if answered (authenticated), else why not."""

    seconds: float | None
    error: str | None = None
    timed_out: bool = False


def probe_check(
    peer: str | None, probes: Sequence[Probe], count: int, connect: float, request: float
) -> Check:
    """Cloud Connector's timeout validation: `count` signed calls of the peer, each bounded by
    the connect and request timeouts every instance-to-instance call has."""
    if peer is None:
        return Check("peer-probes", False, "no peer to probe (no shadow, or HA not enabled)")
    answered = [p.seconds for p in probes if p.seconds is not None]
    limits = f"connect timeout {connect:g} s, request timeout {request:g} s"
    spread = (
        f"latency min/median/max {ms(min(answered))}/{ms(statistics.median(answered))}/"
        f"{ms(max(answered))} ms"
        if answered
        else "no latency measured"
    )
    timeouts = sum(p.timed_out for p in probes)
    errors = [p.error for p in probes if p.error is not None and not p.timed_out]
    if len(answered) == count:
        return Check(
            "peer-probes", True, f"{count}/{count} signed calls of {peer} answered: {spread} "
            f"({limits})"
        )  # fmt: skip
    unsent = count - len(probes)
    said = f"{timeouts} timed out, {len(errors)} failed" + (
        f", {unsent} not sent after a timeout" if unsent else ""
    )
    first = f" (first error: {errors[0]})" if errors else ""
    return Check(
        "peer-probes",
        False,
        f"{len(answered)}/{count} signed calls of {peer} answered: {said}{first}; {spread} "
        f"({limits})",
    )
