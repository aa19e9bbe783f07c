"""How many connections and how long a listen backlog fit in the file descriptors."""

from __future__ import annotations

import resource

from shadowline.entrypoints.http.limits import descriptor_room, server_bounds


def test_cap_and_backlog_together_fit_in_the_room_the_descriptors_leave() -> None:
    for room in (16, 128, 1000, 19_872, 1_000_000):
        for asked in (1, 50, 1000, 100_000):
            cap, backlog = server_bounds(asked, room)
            assert 1 <= cap <= asked
            assert cap + backlog <= max(room, 1 + backlog)
            assert 8 <= backlog <= 2048


def test_the_asked_cap_is_kept_when_the_descriptors_allow_it() -> None:
    assert server_bounds(1000, 19_872) == (1000, 2048)
    assert server_bounds(1000, 128) == (96, 32)  # a limit of 256 descriptors, 128 kept aside


def test_the_room_is_the_soft_limit_less_the_reserve() -> None:
    room = descriptor_room(reserve=100)
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert room == max(16, soft - 100)
