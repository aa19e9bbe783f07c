"""The harness's waits and ports (shadowline.harness), without starting a process."""

from __future__ import annotations

import itertools
import socket

import pytest

from shadowline.harness import TimedOut, free_port, wait_for


def test_wait_for_answers_the_first_truthy_value_of_its_predicate() -> None:
    answers = iter([None, 0, "", {"role": "master"}])
    assert wait_for(lambda: next(answers), 5, "a role", every=0.001) == {"role": "master"}


def test_wait_for_times_out_naming_what_it_waited_for() -> None:
    with pytest.raises(TimedOut, match=r"timed out after 0\.05s waiting for the promotion"):
        wait_for(lambda: False, 0.05, "the promotion", every=0.01)


def test_wait_for_tolerates_only_the_errors_it_is_told_to() -> None:
    calls = itertools.count()

    def starting() -> bool:
        if next(calls) < 2:
            raise ConnectionError("not listening yet")
        return True

    assert wait_for(starting, 5, "a start", every=0.001, tolerate=(ConnectionError,))
    with pytest.raises(KeyError):
        empty: dict[str, str] = {}
        wait_for(lambda: empty["role"], 5, "a role", every=0.001, tolerate=(ConnectionError,))


def test_free_port_gives_the_preferred_port_when_it_is_free_and_another_when_it_is_taken() -> None:
    port = free_port()
    assert free_port(port) == port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert free_port(port) not in (port, 0)
