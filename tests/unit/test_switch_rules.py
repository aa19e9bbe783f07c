"""The scheduled switch's rules: which `at` is accepted, the CLI's TIME, and a handover's end
read as its outcome (domain.switch)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shadowline.domain.errors import InvalidInput
from shadowline.domain.roles import FenceReason
from shadowline.domain.switch import due_time, outcome, parse_when

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def test_a_time_with_its_offset_within_seven_days_is_accepted() -> None:
    assert due_time("2026-12-05T13:30:00+01:00", NOW) == NOW + timedelta(minutes=30)
    assert due_time("2026-12-05T12:10:00Z", NOW) == NOW + timedelta(minutes=10)
    assert due_time("2026-12-12T12:00:00+00:00", NOW) == NOW + timedelta(days=7)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("2026-12-05T11:59:00Z", "not in the future"),
        ("2026-12-05T12:00:00.5Z", "not in the future"),
        ("2026-12-12T12:00:01Z", "more than 7 days ahead"),
        ("2026-12-05T13:00:00", "offset"),
        ("tomorrow", "not an ISO-8601 time"),
        (12, "ISO-8601"),
        (None, "ISO-8601"),
        ("2" * 100, "ISO-8601"),
    ],
)
def test_every_other_at_is_a_clear_422(value: object, said: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        due_time(value, NOW)
    assert refused.value.errors[0].path == "$.at" and said in refused.value.errors[0].message


def test_the_cli_time_is_relative_or_iso() -> None:
    assert parse_when("+30s", NOW) == NOW + timedelta(seconds=30)
    assert parse_when("+10m", NOW) == NOW + timedelta(minutes=10)
    assert parse_when("+2h", NOW) == NOW + timedelta(hours=2)
    assert parse_when("+1d", NOW) == NOW + timedelta(days=1)
    assert parse_when("2026-12-06T01:00:00Z", NOW) == datetime(2026, 12, 6, 1, tzinfo=UTC)
    assert parse_when("2026-12-06T01:00:00", NOW).tzinfo is not None, "local time when none"
    for bad in ("+10", "10m", "+-1m", "soon"):
        with pytest.raises(ValueError, match="TIME must be"):
            parse_when(bad, NOW)


def test_a_handover_that_raised_reads_unknown_only_when_the_promote_may_have_landed() -> None:
    assert outcome(FenceReason.HANDOVER_UNKNOWN) == "unknown"
    assert outcome(FenceReason.REJOINING) == "done"
    assert outcome(None) == "failed"
    assert outcome(FenceReason.LEASE_LOST) == "failed"
