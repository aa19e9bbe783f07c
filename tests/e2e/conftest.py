"""Real `shadowline` processes for end-to-end tests, stopped (or killed) and cleaned up after.

The processes themselves are the product's harness (shadowline.harness, which `shadowline demo`
and the benchmarks use too); this module gives them the tests' names and settings.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shadowline import harness
from shadowline.harness import InstanceProcess, free_port
from tests.conftest import ADMIN_PASSWORD, AMQP_URL, delete_cluster_topology

__all__ = ["Pair", "Process", "free_port", "make_process"]

# A failed end-to-end test reports what its processes logged: CI keeps nothing else of a run.
_TELLING = re.compile(r"WARNING|ERROR|CRITICAL|Traceback|rejected|refused|nack", re.IGNORECASE)
_REPEATED = re.compile(r"\(again, still active\)|SHADOWLINE_CLUSTER_SECRET has")
_TELLING_LINES, _LAST_LINES = 25, 10
_TMP = pytest.StashKey[Path]()


@pytest.fixture(autouse=True)
def _remember_tmp_path(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    request.node.stash[_TMP] = tmp_path


def _told(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    telling = [line for line in lines if _TELLING.search(line) and not _REPEATED.search(line)]
    last = [line for line in lines[-_LAST_LINES:] if line not in telling[-_TELLING_LINES:]]
    return "\n".join([*telling[-_TELLING_LINES:], "-- then its last lines:", *last])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    tmp = item.stash.get(_TMP, None)
    if report.failed and call.when == "call" and tmp is not None:
        for log in sorted(tmp.rglob("*.log")):
            report.sections.append((f"log {log.relative_to(tmp)}", _told(log)))
    return report


Process = InstanceProcess  # one `shadowline instance` that can be started, killed, started again


def make_process(db_url: str, log: Path, *, name: str, cluster: str, **env: str) -> Process:
    """An instance of the tests' cluster secret and admin password on a free port, not started;
    `env` overrides any setting (SHADOWLINE_AMQP_URL included)."""
    return harness.instance(
        log,
        name=name,
        cluster=cluster,
        database_url=db_url,
        password=ADMIN_PASSWORD,
        secret="e2e-secret",
        env={"SHADOWLINE_AMQP_URL": AMQP_URL, **env},
    )


@pytest.fixture
def instance_process(db_url: str, tmp_path: Path) -> Iterator[Process]:
    process = make_process(
        db_url, tmp_path / "instance.log", name="e2e-solo", cluster=f"e2e{uuid.uuid4().hex[:8]}"
    )
    yield process
    process.stop()


@dataclass
class Pair:
    master: Process
    shadow: Process
    cluster: str

    def admin(self, process: Process) -> httpx.Client:
        return httpx.Client(base_url=process.url, auth=("admin", ADMIN_PASSWORD), timeout=30)

    def set_up(self, auto_confirm: bool = False) -> None:
        """Start both, enable HA on the master, join the shadow, confirm it."""
        harness.start_all((self.master, self.shadow))
        harness.set_up_ha(self.master, self.shadow, ADMIN_PASSWORD, auto_confirm)


@pytest.fixture
async def pair(
    db_factory: Callable[[], Awaitable[str]], rabbitmq: None, tmp_path: Path
) -> AsyncIterator[Pair]:
    cluster = f"e2e{uuid.uuid4().hex[:8]}"
    master = make_process(
        await db_factory(), tmp_path / "master.log", name="master", cluster=cluster
    )
    shadow = make_process(
        await db_factory(), tmp_path / "shadow.log", name="shadow", cluster=cluster
    )
    yield Pair(master, shadow, cluster)
    for process in (shadow, master):
        process.stop()
    await delete_cluster_topology(cluster, ["shadow"])
