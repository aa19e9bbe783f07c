"""The master tells monitoring when its shadow lags or is lost (alert.lag, alert.shadow-lost).

A real master and shadow (heartbeat 0.5 s, takeover delay 2 s, lag limit 1 s on the master).
The shadow is paused (SIGSTOP) for 1.6 s while the master writes: it falls more than 1 s behind
without yet being lost. Then it is paused for longer than the takeover delay: it is lost. Once
it runs again both alerts resolve, on monitoring and in the master's GET /alerts.
"""

from __future__ import annotations

import signal
import time

import orjson
import pytest

from tests.e2e.conftest import Pair
from tests.e2e.test_monitoring_messages import HA_ENV, Monitor, _mapping, _wait
from tests.unit.test_message_schemas import check_message

pytestmark = pytest.mark.e2e


def _paused(pair: Pair, seconds: float, writes: int) -> None:
    pair.shadow.signal(signal.SIGSTOP)
    try:
        with pair.admin(pair.master) as master:
            for n in range(writes):
                response = master.put(f"/config/system-mapping/p{n}", json=_mapping(n))
                assert response.status_code in (200, 201), response.text
        time.sleep(seconds)
    finally:
        pair.shadow.signal(signal.SIGCONT)


def test_the_master_alerts_when_its_shadow_lags_and_when_it_is_lost(pair: Pair) -> None:
    pair.master.env.update({**HA_ENV, "SHADOWLINE_LAG_ALERT_SECONDS": "1"})
    pair.shadow.env.update(HA_ENV)
    exchange = f"shadowline.{pair.cluster}.monitoring"
    monitor = Monitor(exchange).start()
    try:
        pair.set_up()
        with pair.admin(pair.master) as master:
            _wait(lambda: master.get("/ha").json()["shadow"]["state"] == "connected", 30, "sync")
        _paused(pair, 1.6, writes=2)
        _wait(lambda: _keys(monitor) & {"alert.lag"}, 15, "alert.lag")
        _paused(pair, 3.5, writes=1)
        _wait(lambda: _keys(monitor) & {"alert.shadow-lost"}, 15, "alert.shadow-lost")
        _wait(lambda: _resolved(monitor) >= {"shadow-lost", "lag"}, 15, "both resolved")
        with pair.admin(pair.master) as master:
            listed = master.get("/alerts").json()["alerts"]
    finally:
        received = monitor.stop()
    alerts = [(m.routing_key, orjson.loads(m.body)) for m in received if "alert." in m.routing_key]
    problems = [p for key, body in alerts for p in check_message(exchange, key, body)]
    assert problems == []
    lost = next(body for key, body in alerts if key == "alert.shadow-lost")
    assert (lost["instance"], lost["details"]["shadow"]) == ("master", "shadow")
    lag = next(body for key, body in alerts if key == "alert.lag")
    assert lag["details"]["master_position"] > lag["details"]["position"]
    said = [(body["alert"], body["state"]) for _, body in alerts]
    assert said.count(("shadow-lost", "active")) == 1, said  # raised once while active
    assert said.index(("shadow-lost", "active")) < said.index(("shadow-lost", "resolved"))
    shown = {(a["name"], a["state"]) for a in listed}
    assert {("shadow-lost", "resolved"), ("lag", "resolved")} <= shown, listed
    lost_row = next(a for a in listed if a["name"] == "shadow-lost")
    assert (lost_row["instance"], lost_row["role"]) == ("master", "master")
    assert lost_row["resolved_at"] > lost_row["raised_at"]


def _resolved(monitor: Monitor) -> set[str]:
    bodies = [orjson.loads(m.body) for m in list(monitor.received) if "alert." in m.routing_key]
    return {b["alert"] for b in bodies if b.get("state") == "resolved"}


def _keys(monitor: Monitor) -> set[str]:
    return {m.routing_key for m in list(monitor.received)}
