"""A promote command is taken up once, and a before-promote hook only starts with time left
(domain.promote.TriedCommands, hook_would_outlast)."""

from __future__ import annotations

from shadowline.domain import signing
from shadowline.domain.promote import PromoteCommand, TriedCommands, hook_would_outlast


def test_an_id_is_new_once_and_forgotten_only_after_twice_the_window() -> None:
    tried = TriedCommands()
    assert tried.first("a", 100.0)
    assert not tried.first("a", 101.0)  # a copy replayed after an aborted promotion
    assert tried.first("b", 102.0)
    assert not tried.first("a", 100.0 + 2 * signing.WINDOW)  # a copy could still pass
    assert tried.first("a", 100.1 + 2 * signing.WINDOW)  # no copy can: forgotten


def test_at_most_so_many_ids_are_kept() -> None:
    tried = TriedCommands()
    for n in range(TriedCommands.KEPT + 10):
        assert tried.first(str(n), 0.0)
    assert len(tried._seen) <= TriedCommands.KEPT + 1
    assert not tried.first(str(TriedCommands.KEPT + 9), 0.0)  # the newest are kept


def test_a_hook_starts_only_if_the_command_outlives_its_longest_run() -> None:
    command = PromoteCommand({"issued_at": 1000.0})
    assert hook_would_outlast(command, 1000.0, 10.0) is None
    assert hook_would_outlast(command, 1000.0 + signing.WINDOW - 12.0, 10.0) is None
    late = hook_would_outlast(command, 1000.0 + signing.WINDOW - 10.5, 10.0)
    assert late is not None and "the hook was not run" in str(late)
