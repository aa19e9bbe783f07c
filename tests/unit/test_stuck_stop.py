"""A stop that does not end logs where every task waits (runtime._log_tasks)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shadowline import runtime


async def _waits_for_ever() -> None:
    await asyncio.Event().wait()


async def test_the_log_names_each_task_and_where_it_waits(caplog: pytest.LogCaptureFixture) -> None:
    stuck = asyncio.create_task(_waits_for_ever(), name="stuck-one")
    await asyncio.sleep(0)
    try:
        with caplog.at_level(logging.ERROR, "shadowline.instance"):
            runtime._log_tasks("not stopped 20 s after SIGTERM")
    finally:
        stuck.cancel()
    assert "not stopped 20 s after SIGTERM; its" in caplog.text
    # the whole chain of awaits, down to where it waits (a task's own stack has one frame)
    assert "test_stuck_stop.py" in caplog.text and "_waits_for_ever <- " in caplog.text
    assert "locks.py" in caplog.text  # asyncio.Event.wait, where the chain ends
