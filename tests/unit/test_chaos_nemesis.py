"""The nemesis's schedule of faults (shadowline_bench.chaos.nemesis): replayable from its seed,
every kind of fault drawn, each within its bounds; the fault record; who is master now."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson

from shadowline.harness import HaCluster
from shadowline_bench.chaos.nemesis import (
    DOWN,
    GAPS,
    POSTGRES_DOWN,
    RABBIT_DOWN,
    RABBIT_PAUSE,
    Fault,
    Planned,
    plan,
    read_faults,
    roles,
)

DELAY = 2.0


def first(seed: int, n: int = 200) -> list[Planned]:
    return list(itertools.islice(plan(seed, DELAY), n))


def test_the_same_seed_plays_the_same_faults_again() -> None:
    assert first(42) == first(42)


def test_another_seed_plays_other_faults() -> None:
    assert first(1, 20) != first(2, 20)


def test_every_kind_of_fault_on_every_target_is_drawn() -> None:
    drawn = {(p.type, p.target) for p in first(3)}
    roles_ = ("master", "shadow", "watchdog")
    rabbits = tuple(f"rabbit-{n}" for n in range(3))
    expected = {(kind, role) for kind in ("kill", "pause") for role in roles_}
    expected |= {(kind, node) for kind in ("kill-rabbit", "pause-rabbit") for node in rabbits}
    assert drawn == expected


def test_with_private_database_servers_their_kills_are_drawn_too_within_their_bounds() -> None:
    planned = list(itertools.islice(plan(3, DELAY, postgres=True), 300))
    kills = [p for p in planned if p.type == "kill-postgres"]
    assert {p.target for p in kills} == {"master", "shadow"}
    assert all(POSTGRES_DOWN[0] - 1e-3 <= p.hold <= POSTGRES_DOWN[1] + 1e-3 for p in kills)
    assert not [p for p in first(3, 300) if p.type == "kill-postgres"]  # none without them


def test_each_fault_lasts_within_its_bounds_after_a_calm_within_its_own() -> None:
    bounds = {
        "pause": (0.3 * DELAY, 1.5 * DELAY),
        "kill": DOWN,
        "kill-rabbit": RABBIT_DOWN,
        "pause-rabbit": RABBIT_PAUSE,
    }
    for p in first(5, 500):
        low, high = bounds[p.type]
        assert low - 1e-3 <= p.hold <= high + 1e-3, p
        assert GAPS[0] - 1e-3 <= p.gap <= GAPS[1] + 1e-3, p


def test_pauses_scale_with_the_takeover_delay() -> None:
    slow = [p for p in itertools.islice(plan(9, 10.0), 300) if p.type == "pause"]
    assert slow and all(3.0 - 1e-3 <= p.hold <= 15.0 + 1e-3 for p in slow)


def test_faults_are_json_lines_read_back_as_they_were_written(tmp_path: Path) -> None:
    done = [
        Fault("kill", "master", "node-a", 1.5, 3.0, 4.25, 1),
        Fault("pause-rabbit", "rabbit-2", "sl-test-1@localhost", 5.0, 9.0, 12.0, 2, "note"),
    ]
    log = tmp_path / "faults.jsonl"
    log.write_bytes(b"".join(orjson.dumps(f.as_dict()) + b"\n" for f in done))
    assert read_faults(log) == done


@dataclass
class FakeNode:
    name: str
    answer: dict[str, Any] | None

    def health(self) -> dict[str, Any] | None:
        return self.answer


@dataclass
class FakeCluster:
    nodes: tuple[FakeNode, FakeNode]


def who(a: dict[str, Any] | None, b: dict[str, Any] | None) -> tuple[str, str, int | None]:
    cluster = FakeCluster((FakeNode("node-a", a), FakeNode("node-b", b)))
    master, shadow, epoch = roles(cast(HaCluster, cluster))
    return master.name, shadow.name, epoch


def test_the_master_is_whoever_says_so_now_not_the_pair_s_first() -> None:
    shadow, master = {"role": "shadow", "epoch": 2}, {"role": "master", "epoch": 2}
    assert who(shadow, master) == ("node-b", "node-a", 2)
    assert who(master, shadow) == ("node-a", "node-b", 2)


def test_without_a_master_answering_the_newest_epoch_counts_as_master() -> None:
    assert who(None, {"role": "shadow", "epoch": 3}) == ("node-b", "node-a", 3)
    assert who({"role": "fenced", "epoch": 4}, {"role": "shadow", "epoch": 3})[0] == "node-a"
    assert who(None, None)[:2] == ("node-a", "node-b")
