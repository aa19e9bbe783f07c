"""`shadowline demo`'s life on this machine: a recreated cluster starts new logs, a refusal names
the cluster in the commands it suggests, and SIGTERM, SIGHUP and a SIGINT its shell left ignored
all stop it as Ctrl-C does (tests/e2e/test_demo.py runs the real processes)."""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shadowline.cli import demo, demo_state
from shadowline.cli.demo_state import Footprint, footprint


def test_a_recreated_cluster_starts_new_logs_keeping_the_last_runs_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    place = footprint("walk13", tmp_path)
    place.log_dir.mkdir(parents=True)
    for name in ("node-a", "node-b", "watchdog"):
        (place.log_dir / f"{name}.log").write_text(f"{name}: the wiped cluster's story\n")
    (place.log_dir / "node-a.log.1").write_text("the run before that\n")
    monkeypatch.setattr(demo_state, "run", lambda work: work.close())  # no database here
    monkeypatch.setattr(Footprint, "_delete_topology", lambda self: None)
    assert place.reset() is None
    assert sorted(p.name for p in place.log_dir.iterdir()) == [
        "node-a.log.1", "node-b.log.1", "watchdog.log.1",
    ]  # fmt: skip
    assert (place.log_dir / "node-a.log.1").read_text() == "node-a: the wiped cluster's story\n"


class Existing(Footprint):
    def running_pid(self) -> int | None:
        return None

    def existing_databases(self) -> list[str]:
        return ["shadowline_walk13_node_a", "shadowline_walk13_node_b"]


def test_the_refusal_for_an_existing_cluster_names_it_in_the_clean_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO())  # no terminal: nobody to ask
    place = footprint("walk13", tmp_path)
    refused = demo_state.refusal(Existing(**vars(place)), force=False)
    assert refused is not None
    assert "`shadowline demo --clean --cluster walk13` removes it" in refused
    assert demo_state.refusal(Existing(**vars(place)), force=True) is None


@pytest.fixture
def handlers() -> Iterator[None]:
    before = {s: signal.getsignal(s) for s in demo.STOP_SIGNALS}
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_each_stop_signal_stops_the_demo_as_ctrl_c_even_when_its_shell_ignored_sigint(
    signum: int, handlers: None
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `shadowline demo &` inherits it
    before: dict[int, Any] = demo._stop_on_signals()
    assert before[signal.SIGINT] is signal.SIG_IGN
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signum)
    demo._restore(None)  # stopping: nothing cuts it short
    os.kill(os.getpid(), signum)
    demo._restore(before)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
