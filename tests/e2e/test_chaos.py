"""The short chaos run (issue 12, item 5): `shadowline bench chaos` for 1.5 minutes of seeded
faults (kill -9 and SIGSTOP of master, shadow, watchdog and RabbitMQ nodes) under the recorded
workload, on a private 3-node broker; the checker must pass: nothing acknowledged lost, nothing
applied unacknowledged, no gap or fork, no split brain, both stores equal, every key
linearizable.

About 2 minutes in all (119 s here: the broker cluster's start, the pair's set-up, 90 s of
faults, heal, check), so it is not part of the suite yet: it runs only when asked,

    SHADOWLINE_TEST_CHAOS=1 .venv/bin/pytest -q -s tests/e2e/test_chaos.py

It reads a 503 refusal of a write as unknown (--refusals-unknown): an instance answers that
503 also for writes it has committed but could not acknowledge (the shadow did not confirm them
and async mode could not be announced, or the lease ran out), which then stay in both stores;
read strictly, every such write is a violation. Drop the flag once that answer says its
outcome is unknown.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shadowline.harness.rabbit import rabbitmq_problem
from tests.conftest import BASE_URL

SEED = 5  # all four kinds of fault in the first 90 s, one SIGSTOP of the master past the delay

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not os.environ.get("SHADOWLINE_TEST_CHAOS"),
        reason="a 2-minute chaos run: SHADOWLINE_TEST_CHAOS=1 runs it",
    ),
    pytest.mark.timeout(600),
]


def test_a_seeded_chaos_run_loses_nothing_and_stays_linearizable(postgres: None) -> None:
    problem = rabbitmq_problem()
    if problem is not None:
        pytest.skip(f"a private RabbitMQ cluster cannot run: {problem}")
    command = [sys.executable, "-m", "shadowline", "bench", "chaos", "--minutes", "1.5",
               "--seed", str(SEED), "--refusals-unknown"]  # fmt: skip
    env = {**os.environ, "SHADOWLINE_DATABASE_URL": BASE_URL}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=540)
    print(done.stdout, done.stderr, sep="\n")
    report = done.stdout.splitlines()
    for line in (
        "  acknowledged writes lost: 0 ok",
        "  writes applied unacknowledged: 0 ok",
        "  versions with a gap or a fork: 0 ok",
        "  split brain: 0 ok",
        "  master and shadow differ: equal ok",
        "  linearizable: 3 of 3 keys ok",
        "  verdict: PASS",
    ):
        assert line in report, f"{line.strip()!r} not in the report:\n{done.stdout}"
    assert done.returncode == 0, done.stderr[-3000:]
    faults = next(line for line in report if line.startswith("faults injected: "))
    assert int(faults.split()[2]) >= 5, faults
