"""The role-change hook's journal in the instance's own database, with the least-privilege
role's grants, and its runner over real commands: every committed role change gets exactly one
row in its own transaction, a restart neither reruns a finished hook nor forgets one that never
ran, and a crash while the hook runs reruns it as attempt 2."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shadowline.adapters.db import create_engine
from shadowline.adapters.ha_repo import HaRepository
from shadowline.adapters.hook_journal import HookJournal
from shadowline.adapters.hook_process import HookProcess
from shadowline.application.hooks import Hooks
from shadowline.domain.alerting import AlertName
from shadowline.domain.errors import Conflict
from shadowline.domain.ha import RoleChange
from shadowline.domain.hooks import Cause
from shadowline.domain.roles import Role
from tests.conftest import make_settings
from tests.integration.chained import as_role, login_role
from tests.integration.hook_script import Hook, make_hook
from tests.unit.test_message_schemas import check_message

pytestmark = pytest.mark.integration

JOIN = RoleChange(
    Role.SHADOW, frozenset({Role.STANDALONE}), epoch=1, cause=Cause.JOIN,
    ha={"master_instance": "node-a", "master_url": "http://a"},
)  # fmt: skip
PROMOTE = RoleChange(Role.MASTER, frozenset({Role.SHADOW}), epoch=2, fence=2, cause=Cause.FAILOVER)


@dataclass
class Said:
    alerts: list[tuple[AlertName, str, dict[str, Any], str]]
    published: list[tuple[str, dict[str, Any]]]


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[tuple[HaRepository, HookJournal, str]]:
    async with login_role(db_url) as role:
        engine = create_engine(as_role(db_url, role), pool_size=2)
        try:
            yield HaRepository(engine), HookJournal(engine), db_url
        finally:
            await engine.dispose()


def hooks(journal: HookJournal, url: str, hook: Hook | None, said: Said) -> Hooks:
    """The runner as a (re)started instance builds it."""
    settings = make_settings(url, on_role_change=hook.command if hook else None)
    return Hooks(
        settings=settings,
        journal=journal,
        runner=HookProcess(settings.instance, settings.cluster, {"PATH": "/usr/bin:/bin"}),
        alert=lambda *alert: said.alerts.append(alert),
        publish=lambda key, body: said.published.append((key, body)),
    )


async def test_each_committed_role_change_gets_one_pending_row_naming_its_cause(
    db: tuple[HaRepository, HookJournal, str],
) -> None:
    repo, journal, _ = db
    await repo.change_role(JOIN)
    await repo.change_role(PROMOTE)
    rows = await journal.unfinished()
    assert [(r.epoch, r.role, r.previous_role, r.cause, r.state, r.attempts) for r in rows] == [
        (1, "shadow", "standalone", "join", "pending", 0),
        (2, "master", "shadow", "failover", "pending", 0),
    ]


async def test_a_refused_role_change_records_no_hook(
    db: tuple[HaRepository, HookJournal, str],
) -> None:
    repo, journal, _ = db
    with pytest.raises(Conflict):
        await repo.change_role(PROMOTE)  # a standalone instance is no shadow: refused
    assert await journal.unfinished() == []


async def test_each_hook_runs_once_and_a_restart_runs_none_again(
    db: tuple[HaRepository, HookJournal, str], tmp_path: Path
) -> None:
    repo, journal, url = db
    hook, said = make_hook(tmp_path), Said([], [])
    await repo.change_role(JOIN)
    await repo.change_role(PROMOTE)
    assert await hooks(journal, url, hook, said).run_unfinished() == 2
    assert await hooks(journal, url, hook, said).run_unfinished() == 0  # restarted
    assert [run[:6] for run in hook.runs()] == [
        ["on-role-change", "shadow", "standalone", "1", "join", "1"],
        ["on-role-change", "master", "shadow", "2", "failover", "1"],
    ]
    assert [r.state for r in await journal.listing()] == ["done", "done"]
    assert [key for key, _ in said.published] == ["failover.hook", "failover.hook"]
    for key, body in said.published:
        doc = {"instance": "node-b", "at": 1.0, **body}
        assert check_message("shadowline.prod.monitoring", key, doc) == []
    assert said.alerts == []


async def test_a_hook_that_never_started_runs_after_the_restart(
    db: tuple[HaRepository, HookJournal, str], tmp_path: Path
) -> None:
    repo, journal, url = db
    hook = make_hook(tmp_path)
    await repo.change_role(JOIN)  # ... and the process died before its runner looked
    await hooks(journal, url, hook, Said([], [])).run_unfinished()
    assert [run[:6] for run in hook.runs()] == [
        ["on-role-change", "shadow", "standalone", "1", "join", "1"]
    ]


async def test_a_crash_while_the_hook_ran_runs_it_again_as_attempt_2(
    db: tuple[HaRepository, HookJournal, str], tmp_path: Path
) -> None:
    repo, journal, url = db
    hook = make_hook(tmp_path)
    await repo.change_role(JOIN)
    assert await journal.started(1, "shadow") == 1  # the hook started; then the process died
    await hooks(journal, url, hook, Said([], [])).run_unfinished()
    assert [run[:6] for run in hook.runs()] == [
        ["on-role-change", "shadow", "standalone", "1", "join", "2"]
    ]
    (row,) = await journal.listing()
    assert (row.state, row.attempts, row.exit_code) == ("done", 2, 0)


async def test_a_failing_hook_is_marked_failed_alerted_and_never_run_again(
    db: tuple[HaRepository, HookJournal, str], tmp_path: Path
) -> None:
    repo, journal, url = db
    hook, said = make_hook(tmp_path), Said([], [])
    hook.fail_with(7)
    await repo.change_role(JOIN)
    await hooks(journal, url, hook, said).run_unfinished()
    await hooks(journal, url, hook, said).run_unfinished()
    assert len(hook.runs()) == 1
    (row,) = await journal.listing()
    assert (row.state, row.exit_code) == ("failed", 7)
    assert row.detail is not None and row.detail.startswith("exited 7")
    ((name, message, details, key),) = said.alerts
    assert key == "on-role-change/1/shadow"
    assert name is AlertName.HOOK_FAILED and "exited 7" in message
    assert details == {"hook": "on-role-change", "epoch": 1, "outcome": "failed"}
    alert = {"alert": "hook-failed", "state": "active", "role": "shadow", "raised_at": 1.0,
             "count": 1, "message": message, "details": details, "instance": "b", "at": 1.0}  # fmt: skip
    assert check_message("shadowline.prod.monitoring", "alert.hook-failed", alert) == []
    ((_, body),) = said.published
    assert (body["outcome"], body["exit_code"], body["aborted"]) == ("failed", 7, False)


async def test_without_a_hook_each_row_is_skipped_so_a_later_hook_runs_no_old_change(
    db: tuple[HaRepository, HookJournal, str], tmp_path: Path
) -> None:
    repo, journal, url = db
    await repo.change_role(JOIN)
    await hooks(journal, url, None, Said([], [])).run_unfinished()
    hook = make_hook(tmp_path)
    await hooks(journal, url, hook, Said([], [])).run_unfinished()
    assert hook.runs() == []
    assert [r.state for r in await journal.listing()] == ["skipped"]
