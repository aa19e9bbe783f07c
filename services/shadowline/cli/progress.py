"""Progress bars for long operations (history export, waiting for a shadow's bootstrap).

A bar is drawn on standard error, and only when standard error is a terminal and the user
asked for neither --json nor --quiet: a script or a log file never gets control sequences,
and standard output stays pure data (an export may be writing to it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a bar is drawn: the commands that import this often draw none
    from rich.progress import Progress, TaskID


def wanted(*, quiet: bool = False, as_json: bool = False) -> bool:
    return not quiet and not as_json and sys.stderr.isatty()


class Bar:
    """One task of a progress display; every method does nothing when no bar is drawn."""

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None) -> None:
        self._progress, self._task = progress, task

    def update(
        self,
        *,
        completed: float | None = None,
        total: float | None = None,
        description: str | None = None,
    ) -> None:
        if self._progress is None or self._task is None:
            return
        self._progress.update(self._task, completed=completed, total=total, description=description)


@contextmanager
def bar(description: str, total: float | None, *, enabled: bool) -> Iterator[Bar]:
    """A bar from 0 to `total` (None: unknown yet), removed when the block ends."""
    if not enabled:
        yield Bar()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        yield Bar(progress, progress.add_task(description, total=total))
