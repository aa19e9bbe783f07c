"""A real hook for the tests: a tiny shell script that appends one line per run to a file, so
runs are counted, and exits with what a flag file says (absent: 0)."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

SCRIPT = """#!/bin/sh
# name role previous-role epoch cause attempt secret-seen argument-count
echo "$SHADOWLINE_HOOK_NAME $1 $2 $3 $4 $SHADOWLINE_HOOK_ATTEMPT \
${SHADOWLINE_CLUSTER_SECRET:-no-secret} $#" >> "$(dirname "$0")/runs"
if [ -e "$(dirname "$0")/fail" ]; then exit "$(cat "$(dirname "$0")/fail")"; fi
exit 0
"""


@dataclass(frozen=True)
class Hook:
    path: Path

    @property
    def command(self) -> str:
        return str(self.path)

    def runs(self) -> list[list[str]]:
        """Each run: [name, role, previous_role, epoch, cause, attempt, secret, argc]."""
        log = self.path.parent / "runs"
        return [line.split() for line in log.read_text().splitlines()] if log.exists() else []

    def fail_with(self, code: int | None) -> None:
        flag = self.path.parent / "fail"
        if code is None:
            flag.unlink(missing_ok=True)
        else:
            flag.write_text(str(code))


def make_hook(directory: Path, name: str = "hook.sh") -> Hook:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(SCRIPT)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return Hook(path)
