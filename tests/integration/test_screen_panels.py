"""The HA screen's panels on a real instance: its alerts active and resolved apart, the role
changes read from the durable log (so a restart keeps them), the watchdogs heard on
monitoring, the quarantine, and the maintenance and verify actions with their CSRF tokens."""

from __future__ import annotations

import time

import orjson

from shadowline.bootstrap import Instance
from shadowline.domain.alerting import AlertName
from tests.conftest import delete_cluster_topology, http_client, started
from tests.integration.test_screen import ORIGIN, browser, log_in, publish, section, wait_for


async def test_active_and_resolved_alerts_are_shown_apart(instance: Instance) -> None:
    instance.monitor.alert(AlertName.SHADOW_LOST, "shadow node-b went quiet", {})
    instance.monitor.alert(AlertName.LAG, "shadow node-b is behind", {})
    instance.monitor.resolve(AlertName.LAG, "shadow node-b caught up")
    async with browser(instance) as client:
        await log_in(client, "vic")
        screen = await client.get("/")
    active, resolved = section(screen, "alerts-active"), section(screen, "alerts-resolved")
    assert "shadow-lost" in active and "shadow node-b went quiet" in active
    assert "lag" not in active
    assert "shadow node-b is behind" in resolved and "shadow node-b caught up" in resolved
    async with http_client(instance, "vic") as viewer:
        listed = (await viewer.get("/alerts")).json()["alerts"]
    async with http_client(instance, None) as anonymous:
        refused = await anonymous.get("/alerts")
    assert refused.status_code == 401 and "error" in refused.json()
    assert [(a["name"], a["state"]) for a in listed] == [
        ("shadow-lost", "active"),
        ("lag", "resolved"),
    ]


async def test_the_role_changes_come_from_the_log_and_survive_a_restart(db_url: str) -> None:
    async with started(db_url) as first:
        cluster = first.settings.cluster
        async with http_client(first, "admin") as admin:
            assert (await admin.post("/ha/enable")).status_code == 200
    try:
        async with started(db_url, cluster=cluster) as again, browser(again) as client:
            await log_in(client, "admin")
            screen = await client.get("/")
    finally:
        await delete_cluster_topology(cluster, [])
    changes = section(screen, "role-changes")
    assert "HaEnabled" in changes and "HA enabled on" in changes
    assert f'<td id="cluster">{cluster}</td>' in screen.text


async def test_maintenance_is_toggled_from_the_screen_with_its_token(instance: Instance) -> None:
    cluster = instance.settings.cluster
    try:
        async with http_client(instance, "admin") as admin:
            assert (await admin.post("/ha/enable")).status_code == 200
        async with browser(instance) as client:
            csrf = await log_in(client, "admin")
            page = (await client.get("/")).text
            assert 'id="maintenance"' in page and "Start maintenance" in page
            headers = {"Origin": ORIGIN}
            forged = await client.post("/ui/maintenance", data={"on": "true"}, headers=headers)
            assert forged.status_code == 403
            done = await client.post(
                "/ui/maintenance", data={"csrf": csrf, "on": "true"}, headers=headers
            )
            assert done.status_code == 303
            flashed = (await client.get("/")).text
            assert "Maintenance on: automatic failover paused." in flashed
            assert "End maintenance" in flashed
            async with http_client(instance, "admin") as admin:
                assert (await admin.get("/ha")).json()["maintenance"] is True
            refused = await client.post("/ui/verify", data={"csrf": csrf}, headers=headers)
            assert refused.status_code == 303
            assert "no peer to verify against" in (await client.get("/")).text
    finally:
        await delete_cluster_topology(cluster, [])


async def test_the_watchdogs_heard_on_monitoring_are_listed_with_their_state(
    instance: Instance, rabbitmq: None
) -> None:
    cluster = instance.settings.cluster
    body = {
        "cluster": cluster, "watchdog": "wd-east", "phase": "watching", "maintenance": False,
        "master": instance.settings.instance, "epoch": 1, "master_heard": 0.2,
        "master_alive": None, "promoting": None, "interval": 5.0, "boot": "ab12", "seq": 1,
        "at": time.time(),
    }  # fmt: skip
    try:
        async with http_client(instance, "admin") as admin:
            assert (await admin.post("/ha/enable")).status_code == 200
        async with browser(instance) as client:
            await log_in(client, "vic")
            await wait_for(client, "Listening to the cluster")
            await publish(cluster, "failover.watchdog", orjson.dumps(body))
            seen = await wait_for(client, "<td>wd-east</td>")
    finally:
        await delete_cluster_topology(cluster, [])
    watchdogs = seen.split('id="watchdogs"')[1].split("</table>")[0]
    assert "<td>watching</td>" in watchdogs and "<td>off</td>" in watchdogs
    assert "failover.watchdog" not in seen.split('id="events"')[1]  # not an event: a state


async def test_an_auditor_sees_the_quarantine_and_a_viewer_does_not(instance: Instance) -> None:
    async with browser(instance) as client:
        await log_in(client, "ada")
        audited = (await client.get("/")).text
    async with browser(instance) as client:
        await log_in(client, "vic")
        viewed = (await client.get("/")).text
    assert 'id="quarantine"' in audited and "Nothing is quarantined." in audited
    assert 'id="quarantine"' not in viewed
