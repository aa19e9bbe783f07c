"""What `shadowline ha ...` prints, and its wait for a shadow to be in sync."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from shadowline.cli import progress
from shadowline.cli.common import EXIT_INTERRUPTED, EXIT_TIMEOUT, call, fail

if TYPE_CHECKING:  # httpx is imported by the command that makes the client
    from shadowline.client.http import Client

WAITING = {
    "pending": "waiting for `shadowline ha confirm` on the master",
    "syncing": "shadow bootstrap",
    "lost": "waiting for the shadow to report",
}


def describe(doc: dict[str, Any]) -> str:
    lines = [
        f"{doc['instance']}: {doc['role']} in epoch {doc['epoch']} at position {doc['position']}"
    ]
    if doc.get("replication"):
        lines.append(f"  replication {doc['replication']}")
    if shadow := doc.get("shadow"):
        age = shadow.get("last_seen_age")
        seen = f", last seen {age:.1f}s ago" if age is not None else ""
        lines.append(
            f"  shadow {shadow['instance']} ({shadow['url']}): {shadow['state']}, at position "
            f"{shadow['position']}, {shadow['lag_events']} events behind{seen}"
        )
    if master := doc.get("master"):
        lag = doc.get("lag") or {}
        lines.append(f"  master {master['instance']} ({master['url']})")
        if lag.get("events") is not None:
            lines.append(f"  lag {lag['events']} events, {lag['seconds']:.2f}s")
    return "\n".join(lines)


def wait_in_sync(master: Client, timeout: float, shown: bool) -> dict[str, Any]:
    """Poll the master's GET /ha until its shadow has applied everything the master had
    (state `connected`); the bar shows the shadow's position against the master's."""
    deadline = time.monotonic() + timeout
    try:
        with progress.bar("shadow bootstrap", None, enabled=shown) as bar:
            while True:
                doc = call(master.ha)
                shadow = doc.get("shadow")
                if shadow is None:
                    fail("the master has no shadow (removed, or HA not enabled there)")
                bar.update(
                    completed=shadow["position"],
                    total=max(doc["position"], shadow["position"]),
                    description=WAITING.get(shadow["state"], shadow["state"]),
                )
                if shadow["state"] == "connected":
                    return dict(doc)
                if time.monotonic() >= deadline:
                    fail(
                        f"after {timeout:g}s the shadow {shadow['instance']} is still "
                        f"{shadow['state']}, at position {shadow['position']} of {doc['position']}",
                        EXIT_TIMEOUT,
                    )
                time.sleep(0.5)
    except KeyboardInterrupt:
        fail("interrupted while waiting; the setup itself stands", EXIT_INTERRUPTED)


def describe_quarantine(doc: dict[str, Any], export: str | None) -> str:
    lines = [f"{doc['count']} quarantined events" + (f" written to {export}" if export else "")]
    lines += [
        f"{e['position']:>8}  e{e['epoch']}  {e['type']:<14} {e['kind'] or ''}/{e['name'] or ''} "
        f"v{e['version']}  (fork {e['fork_position']}, new epoch {e['new_epoch']})"
        for e in doc["events"]
    ]
    return "\n".join(lines)
