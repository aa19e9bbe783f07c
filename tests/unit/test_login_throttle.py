"""Failed logins per source address: a window, Retry-After, a reset, bounded memory. No I/O."""

from __future__ import annotations

import pytest

from shadowline.application.auth import LoginThrottle, TooManyFailures


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_failure_past_the_limit_is_refused_until_the_window_ends() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window=60, clock=clock)
    for _ in range(3):
        throttle.check("10.0.0.1")
        throttle.failed("10.0.0.1")
        clock.now += 5
    with pytest.raises(TooManyFailures) as refused:
        throttle.check("10.0.0.1")
    assert refused.value.retry_after == 45  # the window began with the first failure
    throttle.check("10.0.0.2")  # another address is not concerned
    clock.now += 45
    throttle.check("10.0.0.1")  # the window is over: a new one starts with the next failure


def test_a_success_resets_the_count() -> None:
    throttle = LoginThrottle(max_failures=2, window=60, clock=Clock())
    throttle.failed("a")
    throttle.succeeded("a")
    throttle.failed("a")
    throttle.check("a")
    throttle.failed("a")
    with pytest.raises(TooManyFailures):
        throttle.check("a")


def test_retry_after_is_at_least_one_second() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=1, window=1, clock=clock)
    throttle.failed("a")
    clock.now += 0.999
    with pytest.raises(TooManyFailures) as refused:
        throttle.check("a")
    assert refused.value.retry_after == 1


def test_at_most_max_sources_are_tracked_the_least_recently_failing_forgotten() -> None:
    throttle = LoginThrottle(max_failures=1, window=60, max_sources=100, clock=Clock())
    for n in range(1000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle) == 100
    throttle.check("10.0.0.0")  # forgotten
    with pytest.raises(TooManyFailures):
        throttle.check("10.0.3.231")  # the last one
