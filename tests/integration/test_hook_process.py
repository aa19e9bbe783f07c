"""A hook's command runs as a real process: no shell, its arguments and SHADOWLINE_HOOK_*
environment, none of the instance's secrets, killed at its timeout with whatever it started,
its output bounded."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from pathlib import Path

from shadowline.adapters.hook_process import HookProcess
from shadowline.domain.hooks import OUTPUT_LINES, Cause, HookCall, HookName, Outcome
from tests.integration.hook_script import make_hook

CALL = HookCall(HookName.ON_ROLE_CHANGE, "master", "shadow", 3, Cause.FAILOVER)
ENVIRON = {
    "PATH": os.environ["PATH"],
    "SHADOWLINE_CLUSTER_SECRET": "the-secret",
    "SHADOWLINE_ADMIN_PASSWORD": "the-password",
    "SHADOWLINE_DATABASE_URL": "postgresql://u:p@h/db",
}


def _python(code: str) -> str:
    return shlex.join([sys.executable, "-c", code])


async def test_a_hook_is_told_role_previous_role_epoch_and_cause_and_gets_no_secret(
    tmp_path: Path,
) -> None:
    hook = make_hook(tmp_path)
    result = await HookProcess("node-b", "prod", ENVIRON).run(hook.command, CALL, 10)
    assert result.outcome is Outcome.OK and result.exit_code == 0
    assert hook.runs() == [
        ["on-role-change", "master", "shadow", "3", "failover", "1", "no-secret", "4"]
    ]


async def test_the_environment_names_every_hook_variable_and_no_other_shadowline_one() -> None:
    code = "import os, json; print(json.dumps({k: v for k, v in os.environ.items()}))"
    result = await HookProcess("node-b", "prod", ENVIRON).run(_python(code), CALL, 10)
    shown = " ".join(result.output)
    for told in ('"SHADOWLINE_HOOK_ROLE": "master"', '"SHADOWLINE_HOOK_PREVIOUS_ROLE": "shadow"',
                 '"SHADOWLINE_HOOK_EPOCH": "3"', '"SHADOWLINE_HOOK_CAUSE": "failover"',
                 '"SHADOWLINE_HOOK_ATTEMPT": "1"', '"SHADOWLINE_HOOK_INSTANCE": "node-b"',
                 '"SHADOWLINE_HOOK_CLUSTER": "prod"', '"SHADOWLINE_HOOK_NAME": "on-role-change"'):  # fmt: skip
        assert told in shown
    for secret in ("the-secret", "the-password", "postgresql://"):
        assert secret not in shown


async def test_no_shell_interprets_the_command_line(tmp_path: Path) -> None:
    marker = tmp_path / "injected"
    command = f"echo ';' touch {marker} '$(touch {marker})' '|' touch {marker}"
    result = await HookProcess("node-b", "prod", ENVIRON).run(command, CALL, 10)
    assert result.ok
    assert not marker.exists()
    assert result.output[0].startswith(f"; touch {marker} $(touch {marker}) | touch")


async def test_a_non_zero_exit_is_a_failure_with_its_code(tmp_path: Path) -> None:
    hook = make_hook(tmp_path)
    hook.fail_with(3)
    result = await HookProcess("node-b", "prod", ENVIRON).run(hook.command, CALL, 10)
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, 3)
    assert result.detail(10).startswith("exited 3 after")


async def test_a_hook_past_its_timeout_is_killed_with_the_children_it_started(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        f"open({str(pid_file)!r}, 'w').write(str(c.pid)); time.sleep(600)"
    )
    result = await HookProcess("node-b", "prod", ENVIRON).run(_python(code), CALL, 1.0)
    assert (result.outcome, result.exit_code) == (Outcome.TIMEOUT, None)
    child = int(pid_file.read_text())
    await _gone(child)


async def test_a_child_left_holding_the_output_does_not_hold_the_hook(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        f"open({str(pid_file)!r}, 'w').write(str(c.pid)); print('started')"
    )
    result = await HookProcess("node-b", "prod", ENVIRON).run(_python(code), CALL, 30)
    assert result.ok and result.output == ("started",)
    await _gone(int(pid_file.read_text()))


async def test_the_output_kept_is_bounded_and_the_rest_counted() -> None:
    code = "import sys; [print('x' * 2000) for _ in range(2000)]"
    result = await HookProcess("node-b", "prod", ENVIRON).run(_python(code), CALL, 30)
    assert result.ok
    assert len(result.output) == OUTPUT_LINES
    assert all(len(line) == 500 for line in result.output)
    assert result.dropped > 3_000_000


async def test_a_command_that_cannot_be_started_is_an_error_not_a_crash(tmp_path: Path) -> None:
    hook = make_hook(tmp_path)
    hook.path.unlink()  # removed after the settings checked it
    result = await HookProcess("node-b", "prod", ENVIRON).run(hook.command, CALL, 10)
    assert (result.outcome, result.exit_code) == (Outcome.ERROR, None)
    assert "could not be started" in result.detail(10)


def _zombie(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" in status.read_text()


async def _gone(pid: int) -> None:
    """The process is dead (or a zombie of its parent, which was killed too): kill -0 fails,
    or /proc says Z. Polled: killing is asynchronous in the kernel."""
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if _zombie(pid):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"process {pid} is still alive")
