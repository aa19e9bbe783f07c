"""Start-up failures end with one clear line and exit code 2, never a traceback wall."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shadowline", "instance"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_broken_timing_settings_are_refused_with_exit_code_2() -> None:
    done = _run(SHADOWLINE_HEARTBEAT_INTERVAL="1", SHADOWLINE_TAKEOVER_DELAY="1")
    assert done.returncode == 2
    assert "timing rule broken" in done.stderr and "Traceback" not in done.stderr


def test_an_unreachable_database_ends_with_one_line_and_exit_code_2() -> None:
    done = _run(
        SHADOWLINE_DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere",
        SHADOWLINE_STARTUP_PATIENCE="1",
        SHADOWLINE_HTTP_BIND="127.0.0.1:0",
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("shadowline: database unreachable") and "Traceback" not in done.stderr
