"""Real shadowline processes and HA clusters of them, for `shadowline demo`, the benchmarks
and the end-to-end tests.

It starts processes through the command line (`python -m shadowline ...`) and talks to them
over their public HTTP API only, so it imports nothing of the instance: no application,
entrypoints or adapters.
"""

from shadowline.harness.cluster import HaCluster, admin, call, set_up_ha, start_all, wait_role
from shadowline.harness.processes import (
    HarnessError,
    InstanceProcess,
    ShadowlineProcess,
    TimedOut,
    WatchdogProcess,
    free_port,
    instance,
    stop_all,
    wait_for,
)

__all__ = [
    "HaCluster",
    "HarnessError",
    "InstanceProcess",
    "ShadowlineProcess",
    "TimedOut",
    "WatchdogProcess",
    "admin",
    "call",
    "free_port",
    "instance",
    "set_up_ha",
    "start_all",
    "stop_all",
    "wait_for",
    "wait_role",
]
