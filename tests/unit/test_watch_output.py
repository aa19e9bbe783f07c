"""`shadowline watch` for a person: a watchdog announces its view every takeover delay, which
would bury role changes, failover steps and alerts; only a change of what it says is shown, as
one readable line (`--json` prints every message as it came)."""

from __future__ import annotations

from typing import Any

import pytest

from shadowline.cli.watch import ANNOUNCEMENT, Announcements, _print, describe


def view(phase: str, master: str | None, **fields: Any) -> dict[str, Any]:
    return {
        "cluster": "demo",
        "watchdog": "watchdog",
        "phase": phase,
        "maintenance": False,
        "master": master,
        "epoch": 2,
        "master_heard": 0.4,
        "promoting": None,
        "boot": "b1",
        "seq": 7,
        "at": 1.0,
        **fields,
    }


def test_a_watchdogs_announcement_is_shown_only_when_its_phase_or_master_changes() -> None:
    said = Announcements()
    stream = [
        view("watching", "node-a"),
        view("watching", "node-a", seq=8, master_heard=0.1),  # the same view, later
        view("watching", "node-a", seq=9),
        view("probing", "node-a"),
        view("watching", "node-b"),
        view("watching", "node-b", seq=12),
        view("watching", "node-a", watchdog="wd-2"),  # another watchdog's first word
    ]
    shown = [(v["watchdog"], v["phase"], v["master"]) for v in stream if said.news(v)]
    assert shown == [
        ("watchdog", "watching", "node-a"),
        ("watchdog", "probing", "node-a"),
        ("watchdog", "watching", "node-b"),
        ("wd-2", "watching", "node-a"),
    ]


def test_an_announcement_reads_as_a_sentence_not_as_json() -> None:
    line = describe(ANNOUNCEMENT, view("watching", "node-b"))
    assert line == "watchdog watching: sees master node-b in epoch 2"
    paused = describe(ANNOUNCEMENT, view("watching", None, maintenance=True))
    assert paused == "watchdog watching: sees no master (maintenance: automatic failover paused)"
    assert "{" not in line + paused


def test_json_output_keeps_every_announcement_and_the_human_one_only_the_changes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = [view("watching", "node-a", seq=n) for n in range(5)] + [view("probing", "node-a")]
    as_json = Announcements()
    assert all(_print(ANNOUNCEMENT, v, True, as_json) for v in stream)
    assert len(capsys.readouterr().out.splitlines()) == 6
    person = Announcements()
    printed = [_print(ANNOUNCEMENT, v, False, person) for v in stream]
    assert printed == [True, False, False, False, False, True]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 2)[2].strip() for line in lines] == [
        "watchdog watching: sees master node-a in epoch 2",
        "watchdog probing: sees master node-a in epoch 2",
    ]
