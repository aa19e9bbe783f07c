"""The console script against a real instance process: `history export` (NDJSON, CSV, filters,
paging), JSON output of client commands, the exit-code table and the export's progress bar."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import pty
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from typer.testing import CliRunner, Result

from shadowline.cli.export import CSV_COLUMNS
from shadowline.cli.main import app
from tests.conftest import ADMIN_PASSWORD
from tests.e2e.conftest import Process, free_port

# Reasons a spreadsheet or a CSV parser could trip over (headers carry no line breaks).
REASONS = ['ticket 4711, "urgent"', "=1+2", "-rollback", "@ops", "plain"]


def shadowline(
    process: Process | None, *args: str, password: str = ADMIN_PASSWORD, **env: str
) -> Result:
    """Run the console script in this process, as `admin` of the instance unless told."""
    login = ["--url", process.url, "--user", "admin", "--password", password] if process else []
    return CliRunner().invoke(app, [*args, *login], env=env or None, prog_name="shadowline")


def _subaccount(i: int) -> dict[str, Any]:
    return {
        "region": "cf.eu10.hana.ondemand.com",
        "subaccount_id": f"id-{i}",
        "display_name": f'Größe, "quoted"\nline {i}',
    }


def _mapping(i: int) -> dict[str, Any]:
    return {
        "virtual_host": f"v{i}",
        "virtual_port": 443,
        "internal_host": "10.0.0.1",
        "internal_port": 1000 + i,
        "protocol": "HTTPS",
    }


def started(process: Process) -> Process:
    process.start()
    process.wait_healthy()
    return process


def fill(process: Process, count: int, user: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    """`count` subaccount puts, 16 at a time, each with one of the awkward reasons."""

    async def run() -> None:
        gate = asyncio.Semaphore(16)
        async with httpx.AsyncClient(
            base_url=process.url, auth=(user, password), timeout=60
        ) as client:

            async def put(i: int) -> None:
                async with gate:
                    reply = await client.put(
                        f"/config/subaccount/s{i % 97}",
                        json=_subaccount(i),
                        headers={"X-Reason": REASONS[i % len(REASONS)]},
                    )
                    assert reply.status_code in (200, 201), reply.text

            await asyncio.gather(*(put(i) for i in range(count)))

    asyncio.run(run())


def mixed_history(process: Process) -> None:
    """Puts of two kinds and deletes: 48 events."""
    fill(process, 40)
    with httpx.Client(base_url=process.url, auth=("admin", ADMIN_PASSWORD)) as client:
        for i in range(5):
            assert client.put(f"/config/system-mapping/m{i}", json=_mapping(i)).is_success
        for i in range(3):
            assert client.delete(f"/config/subaccount/s{i}").is_success


def api_events(process: Process, **params: Any) -> bytes:
    with httpx.Client(base_url=process.url, auth=("admin", ADMIN_PASSWORD)) as client:
        reply = client.get("/events", params={"limit": 1_000_000, **params})
        assert reply.status_code == 200
        return reply.content


def positions(ndjson: bytes) -> list[int]:
    return [orjson.loads(line)["position"] for line in ndjson.splitlines()]


# -- history export ----------------------------------------------------------------------------


def test_export_ndjson_lines_are_the_events_api_lines_byte_for_byte(
    instance_process: Process,
) -> None:
    mixed_history(started(instance_process))
    result = shadowline(instance_process, "history", "export", "--page-size", "7")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes.splitlines() == api_events(instance_process).splitlines()
    assert len(result.stdout_bytes.splitlines()) == 48
    assert "exported 48 events as ndjson to standard output" in result.stderr


def test_export_csv_reads_back_with_the_same_positions_data_and_metadata(
    instance_process: Process, tmp_path: Path
) -> None:
    mixed_history(started(instance_process))
    out = tmp_path / "audit.csv"
    result = shadowline(instance_process, "history", "export", "--format", "csv", "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_bytes().decode(), newline="")))
    events = [orjson.loads(line) for line in api_events(instance_process).splitlines()]
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [int(r["position"]) for r in rows] == [e["position"] for e in events]
    for row, event in zip(rows, events, strict=True):
        assert orjson.loads(row["data"]) == event["data"]
        assert orjson.loads(row["metadata"]) == event["metadata"]
        assert row["reason"] == event["metadata"].get("reason", "")
        assert (row["type"], row["id"], row["chain"]) == (
            event["type"],
            event["id"],
            event["chain"],
        )
        assert row["recorded_at"] == event["recorded_at"]
    safe = shadowline(instance_process, "history", "export", "--format", "csv", "--excel-safe")
    defused = {r["reason"] for r in csv.DictReader(io.StringIO(safe.stdout, newline=""))}
    assert {"'=1+2", "'-rollback", "'@ops", 'ticket 4711, "urgent"'} <= defused


def test_export_with_filters_writes_exactly_what_the_api_selects(instance_process: Process) -> None:
    mixed_history(started(instance_process))
    for filters, params in [
        (["--kind", "system-mapping"], {"kind": "system-mapping"}),
        (["--name", "s3"], {"name": "s3"}),
        (["--kind", "subaccount", "--actor", "admin"], {"kind": "subaccount", "actor": "admin"}),
        (["--actor", "nobody"], {"actor": "nobody"}),
    ]:
        result = shadowline(instance_process, "history", "export", "--page-size", "2", *filters)
        assert result.exit_code == 0, result.output
        assert result.stdout_bytes == api_events(instance_process, **params), filters
    window = shadowline(instance_process, "history", "export", "--after", "10", "--to", "30")
    assert positions(window.stdout_bytes) == list(range(11, 31))
    deleted = shadowline(instance_process, "history", "export", "--type", "ConfigDeleted")
    assert [orjson.loads(line)["name"] for line in deleted.stdout_bytes.splitlines()] == [
        "s0",
        "s1",
        "s2",
    ]


def test_export_by_actor_finds_the_changes_of_a_user_added_with_the_cli(
    instance_process: Process,
) -> None:
    started(instance_process)
    database = {"SHADOWLINE_DATABASE_URL": instance_process.env["SHADOWLINE_DATABASE_URL"]}
    added = shadowline(
        None, "users", "add", "alice", "--role", "admin",
        SHADOWLINE_NEW_PASSWORD="alice-secret-1", **database,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    listed = shadowline(None, "users", "list", "--json", **database)
    assert {"name": "alice", "role": "admin"} in orjson.loads(listed.stdout)
    deadline = time.monotonic() + 30  # the instance re-reads its users every second
    while httpx.get(f"{instance_process.url}/ha", auth=("alice", "alice-secret-1")).is_error:
        assert time.monotonic() < deadline, "alice never became a user of the instance"
        time.sleep(0.2)
    fill(instance_process, 5)
    fill(instance_process, 3, user="alice", password="alice-secret-1")
    result = shadowline(instance_process, "history", "export", "--actor", "alice")
    events = [orjson.loads(line) for line in result.stdout_bytes.splitlines()]
    assert [e["metadata"]["actor"] for e in events] == ["alice"] * 3


def test_export_of_3000_events_pages_through_the_whole_history(
    instance_process: Process, tmp_path: Path
) -> None:
    fill(started(instance_process), 3000)
    out = tmp_path / "audit.ndjson"
    result = shadowline(
        instance_process, "history", "export", "--page-size", "700", "-o", str(out), "--json"
    )
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    assert (summary["events"], summary["last_position"], summary["through"]) == (3000, 3000, 3000)
    assert positions(out.read_bytes()) == list(range(1, 3001))
    assert not Path(f"{out}.partial").exists()
    as_csv = shadowline(
        instance_process, "history", "export", "--format", "csv", "--page-size", "999"
    )
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout, newline="")))
    assert [int(r["position"]) for r in rows] == list(range(1, 3001))


def test_a_failed_export_leaves_no_file_behind(instance_process: Process, tmp_path: Path) -> None:
    fill(started(instance_process), 10)
    (exports := tmp_path / "exports").mkdir()
    out = exports / "audit.ndjson"
    refused = shadowline(
        instance_process, "history", "export", "-o", str(out), password="wrong-password"
    )
    assert refused.exit_code == 1
    assert "HTTP 401" in refused.stderr
    assert list(exports.iterdir()) == []


# -- JSON output and exit codes ------------------------------------------------------------------


def test_client_commands_print_json_a_script_can_parse(instance_process: Process) -> None:
    started(instance_process)
    value = '{"region": "eu10", "subaccount_id": "a1"}'
    put = orjson.loads(
        shadowline(instance_process, "config", "put", "subaccount", "acme", value, "--json").stdout
    )
    assert (put["kind"], put["name"], put["version"]) == ("subaccount", "acme", 1)
    shadowline(
        instance_process,
        "config",
        "put",
        "subaccount",
        "acme",
        '{"region": "us10", "subaccount_id": "a1"}',
    )
    docs = {
        "get": ["config", "get", "subaccount", "acme"],
        "list": ["config", "list"],
        "list-at": ["config", "list", "--at", "1"],
        "diff": ["config", "diff", "--from", "1"],
        "ha": ["ha", "status"],
    }  # fmt: skip
    parsed = {}
    for what, args in docs.items():
        result = shadowline(instance_process, *args, "--json")
        assert result.exit_code == 0, result.output
        parsed[what] = orjson.loads(result.stdout)
    assert parsed["get"] == {"value": {"region": "us10", "subaccount_id": "a1"}, "version": 2}
    assert parsed["list-at"]["items"] == {"subaccount/acme": orjson.loads(value)}
    assert list(parsed["diff"]["changed"]) == ["subaccount/acme"]
    assert parsed["ha"]["role"] == "standalone"
    history = shadowline(instance_process, "history", "--json")
    assert [orjson.loads(line)["version"] for line in history.stdout.splitlines()] == [1, 2]


def test_exit_codes_follow_the_documented_table(instance_process: Process) -> None:
    started(instance_process)
    item = ["subaccount", "acme"]
    assert (
        shadowline(
            instance_process, "config", "put", *item, '{"region": "eu10", "subaccount_id": "a"}'
        ).exit_code
        == 0
    )
    cases = {
        "404 not found": (1, ["config", "get", "subaccount", "missing"]),
        "409 conflict": (1, ["config", "put", *item, '{"region": "x", "subaccount_id": "a"}', "--if-match", "7"]),
        "422 invalid": (1, ["config", "put", *item, '{"region": 1}']),
        "409 state": (1, ["ha", "confirm"]),
        "value not JSON": (2, ["config", "put", *item, "{nope"]),
        "unknown option": (2, ["config", "list", "--no-such-option"]),
        "--json with -o -": (2, ["history", "export", "--json"]),
    }  # fmt: skip
    for what, (code, args) in cases.items():
        result = shadowline(instance_process, *args)
        assert result.exit_code == code, f"{what}: {result.output}"
    assert shadowline(instance_process, "config", "list", password="wrong").exit_code == 1
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = CliRunner().invoke(app, ["config", "list", "--url", closed])
    assert unreachable.exit_code == 3
    assert "cannot reach the instance" in unreachable.stderr
    bad_url = CliRunner().invoke(app, ["ha", "status", "--url", "ftp://127.0.0.1"])
    assert bad_url.exit_code == 2


# -- the progress bar ----------------------------------------------------------------------------


def _export_process(process: Process, out: Path, stderr: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "shadowline", "history", "export", "--page-size", "100"]
    return subprocess.Popen(
        [*command, "-o", str(out), "--url", process.url, "--password", ADMIN_PASSWORD],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env={**os.environ, "COLUMNS": "100"},
    )


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the terminal's other side closed: the process ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_export_draws_a_progress_bar_only_when_stderr_is_a_terminal(
    instance_process: Process, tmp_path: Path
) -> None:
    fill(started(instance_process), 1200)
    leader, follower = pty.openpty()
    on_terminal = _export_process(instance_process, tmp_path / "a.ndjson", follower)
    os.close(follower)
    drawn = _read_all(leader)
    os.close(leader)
    assert on_terminal.wait(timeout=120) == 0
    assert b"export ndjson" in drawn and b"1200/1200" in drawn and b"100%" in drawn
    assert b"exported 1200 events" in drawn
    piped = _export_process(instance_process, tmp_path / "b.ndjson", subprocess.PIPE)
    _, err = piped.communicate(timeout=120)
    assert piped.returncode == 0
    assert b"\x1b[" not in err and b"export ndjson" not in err
    assert err.startswith(b"exported 1200 events as ndjson")


def test_history_follow_with_a_filter_prints_only_matches_as_they_are_written(
    instance_process: Process,
) -> None:
    mixed_history(started(instance_process))  # 48 events, 3 of them deletions
    command = [sys.executable, "-m", "shadowline", "history", "--follow", "--json"]
    login = ["--url", instance_process.url, "--user", "admin", "--password", ADMIN_PASSWORD]
    follower = subprocess.Popen(
        [*command, "--type", "ConfigDeleted", *login], stdout=subprocess.PIPE, text=True
    )
    try:
        assert follower.stdout is not None
        seen = [orjson.loads(follower.stdout.readline()) for _ in range(3)]
        with httpx.Client(base_url=instance_process.url, auth=("admin", ADMIN_PASSWORD)) as c:
            for i in range(5, 10):  # writes that do not match, then one that does
                assert c.put(f"/config/system-mapping/m{i}", json=_mapping(i)).is_success
            time.sleep(1)
            assert c.delete("/config/system-mapping/m9").is_success
        seen.append(orjson.loads(follower.stdout.readline()))
    finally:
        follower.terminate()
        follower.wait(timeout=30)
    assert [e["type"] for e in seen] == ["ConfigDeleted"] * 4
    assert [e["name"] for e in seen] == ["s0", "s1", "s2", "m9"]
