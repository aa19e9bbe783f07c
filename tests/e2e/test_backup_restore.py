"""`shadowline backup` of a running instance and `shadowline restore` onto a fresh one, as real
processes on real databases: chain and state equal the origin's, the restore is audited, and a
restored copy refuses to run under its origin's cluster name."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import orjson
import pytest

from tests.archives import mapping
from tests.conftest import ADMIN_PASSWORD
from tests.e2e.conftest import Process, make_process

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret"  # make_process's cluster secret


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The console script as a process of its own, with the given settings."""
    return subprocess.run(
        [sys.executable, "-m", "shadowline", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "SHADOWLINE_CLUSTER_SECRET": SECRET, **env},
    )


def backup(
    process: Process, cluster: str, out: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    login = ["--url", process.url, "--user", "admin", "--password", ADMIN_PASSWORD]
    return cli(
        "backup",
        "--output",
        str(out),
        "--page-size",
        "7",
        *login,
        SHADOWLINE_CLUSTER=cluster,
        **env,
    )


def restore(
    db_url: str, cluster: str, archive: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return cli(
        "restore", str(archive), "--actor", "ops-ada", *args,
        SHADOWLINE_DATABASE_URL=db_url, SHADOWLINE_CLUSTER=cluster, SHADOWLINE_INSTANCE="restored",
        **env,
    )  # fmt: skip


def admin(process: Process) -> httpx.Client:
    return httpx.Client(base_url=process.url, auth=("admin", ADMIN_PASSWORD), timeout=30)


def write(process: Process, count: int) -> None:
    with admin(process) as c:
        for i in range(count):
            c.put(f"/config/system-mapping/m{i % 5}", json=mapping(i)).raise_for_status()
        c.delete("/config/system-mapping/m4").raise_for_status()


def head(process: Process) -> tuple[int, str, str]:
    """(position, chain at the head, digest of the served state)."""
    with admin(process) as c:
        position = c.get("/health").json()["position"]
        last = orjson.loads(c.get("/events", params={"after": position - 1, "limit": 1}).text)
        verdict = c.get("/audit/verify").json()
    assert verdict["ok"], verdict
    from shadowline.domain.state import digest

    with admin(process) as c:
        state = c.get("/config", params={"at": position}).json()["items"]
    return position, last["chain"], digest(state)


async def test_a_backup_restored_onto_a_fresh_instance_has_the_origins_chain_and_state(
    db_factory: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    origin_cluster, copy_cluster = f"e2e{uuid.uuid4().hex[:8]}", f"e2e{uuid.uuid4().hex[:8]}"
    origin = make_process(
        await db_factory(), tmp_path / "o.log", name="node-a", cluster=origin_cluster
    )
    target_db = await db_factory()
    archive = tmp_path / "origin.slbackup"
    try:
        origin.start()
        origin.wait_healthy()
        write(origin, 40)
        position, chain, state_digest = head(origin)
        # The backup checks what it seals: a wrong cluster name or secret writes nothing.
        for cluster, secret in ((copy_cluster, SECRET), (origin_cluster, "another-secret")):
            refused = backup(origin, cluster, archive, SHADOWLINE_CLUSTER_SECRET=secret)
            assert refused.returncode == 1 and "bad signature" in refused.stderr, refused.stderr
            assert not [n for n in os.listdir(tmp_path) if n.startswith(archive.name)]
        made = backup(origin, origin_cluster, archive, SHADOWLINE_CLUSTER_SECRET=SECRET)
        assert made.returncode == 0, made.stderr
        assert f"backed up {position} events" in made.stderr

        done = restore(target_db, copy_cluster, archive, "--json")
        assert done.returncode == 0, done.stderr
        record = orjson.loads(done.stdout)
        assert record["type"] == "BackupRestored" and record["position"] == position + 1
        assert record["metadata"]["actor"] == "ops-ada"
        assert record["data"]["origin"]["cluster"] == origin_cluster
        assert record["data"]["origin"]["head"] == {"position": position, "chain": chain}
        assert record["data"]["cluster"] == copy_cluster

        copy = make_process(target_db, tmp_path / "c.log", name="restored", cluster=copy_cluster)
        try:
            copy.start()
            copy.wait_healthy()
            with admin(copy) as c:
                at = c.get("/events", params={"after": position - 1, "limit": 1}).text
                assert orjson.loads(at)["chain"] == chain  # the origin's chain, link for link
                assert c.get("/audit/verify").json()["ok"]
                c.put("/config/system-mapping/after", json=mapping(99)).raise_for_status()
            busy = restore(target_db, f"{copy_cluster}x", archive)  # running, and not empty
            assert busy.returncode == 1 and "stop the instance first" in busy.stderr, busy.stderr
            copied = head(copy)
            assert copied[0] == position + 2
        finally:
            copy.stop()
        from shadowline.domain.state import digest

        with admin(origin) as c:
            items = c.get("/config").json()["items"]
        assert digest(items) == state_digest
    finally:
        origin.stop()

    # The same store started under the origin's cluster name refuses, saying why.
    again = make_process(target_db, tmp_path / "x.log", name="restored", cluster=origin_cluster)
    again.start()
    assert again.wait(timeout=60) != 0
    assert f"restored from a backup of cluster '{origin_cluster}'" in again.text()


async def test_a_backup_taken_while_writes_go_on_ends_at_one_position(
    db_factory: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    cluster = f"e2e{uuid.uuid4().hex[:8]}"
    origin = make_process(await db_factory(), tmp_path / "o.log", name="node-a", cluster=cluster)
    archive = tmp_path / "busy.slbackup"
    stop = threading.Event()

    def keep_writing() -> None:
        with admin(origin) as c:
            i = 0
            while not stop.is_set() and i < 5000:
                c.put(f"/config/system-mapping/w{i % 20}", json=mapping(i)).raise_for_status()
                i += 1

    try:
        origin.start()
        origin.wait_healthy()
        write(origin, 30)
        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            made = backup(origin, cluster, archive)
        finally:
            stop.set()
            writer.join()
        assert made.returncode == 0, made.stderr
        target = await db_factory()
        done = restore(target, f"{cluster}-copy", archive, "--json")
        assert done.returncode == 0, done.stderr
        record = orjson.loads(done.stdout)
        through = record["data"]["origin"]["head"]
        # The archive is the origin's log up to one position, exactly.
        with admin(origin) as c:
            at = orjson.loads(
                c.get("/events", params={"after": through["position"] - 1, "limit": 1}).text
            )
        assert at["chain"] == through["chain"]
    finally:
        origin.stop()
