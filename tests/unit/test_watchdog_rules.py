"""The watchdog's decisions, as pure functions of (view, observation, now)."""

from __future__ import annotations

from typing import Any

import pytest

from shadowline.domain import signing
from shadowline.domain import watchdog as rules
from shadowline.domain.errors import Forbidden

DELAY = 2.0


def beat(
    instance: str,
    role: str,
    epoch: int = 1,
    committed: int = 10,
    replication: str = "sync",
    peer: str | None = None,
    peer_url: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    return {
        "instance": instance,
        "role": role,
        "epoch": epoch,
        "committed": committed,
        "replication": replication,
        "peer": peer,
        "peer_url": peer_url,
        "url": url or f"http://{instance}:8080",
    }


def watching(now: float = 0.0, replication: str = "sync", shadow_committed: int = 10) -> rules.View:
    view = rules.View("c", started=now - 10)
    view = rules.observe(view, beat("m", "master", replication=replication, peer="s"), now)
    return rules.observe(
        view,
        beat("s", "shadow", committed=shadow_committed, peer="m", peer_url="http://m:8080"),
        now,
    )


def test_nothing_happens_while_the_master_is_heard() -> None:
    view = watching()
    assert rules.tick(view, DELAY - 0.1, DELAY) == (view, [], None, None)


def test_a_silent_master_is_probed_before_anything_else() -> None:
    view, actions, sentence, _ = rules.tick(watching(), DELAY + 0.1, DELAY)
    assert actions == [rules.Probe("m", "http://m:8080")] and view.phase == "probing"
    assert "no heartbeat from master m" in str(sentence)


def test_a_master_that_answers_its_probe_as_master_is_not_replaced() -> None:
    view, _, _, _ = rules.tick(watching(), DELAY + 0.1, DELAY)
    view, actions, sentence, _ = rules.probed(
        view, "m", {"role": "master"}, "", DELAY + 0.2, DELAY, False
    )
    assert actions == [] and view.phase == "watching" and "no failover" in str(sentence)


@pytest.mark.parametrize("answer", [None, {"role": "fenced"}])
def test_a_gone_or_fenced_master_gets_its_shadow_promoted_to_the_next_epoch(
    answer: dict[str, Any] | None,
) -> None:
    view = rules.observe(
        watching(), beat("s", "shadow", committed=10, peer="m"), DELAY
    )  # shadow alive
    view, _, _, _ = rules.tick(view, DELAY + 0.1, DELAY)
    view, actions, sentence, _ = rules.probed(
        view, "m", answer, "connection refused", DELAY + 0.2, DELAY, False
    )
    promote = actions[0]
    assert isinstance(promote, rules.Promote)
    assert actions == [rules.Promote("s", 2, "m", promote.reason)]
    assert view.phase == "promoting" and "promoting shadow s to epoch 2" in str(sentence)


def test_a_lagging_shadow_of_an_async_master_is_not_promoted_without_the_override() -> None:
    view = watching(replication="async", shadow_committed=7)
    view = rules.observe(view, beat("s", "shadow", committed=7, peer="m"), DELAY)
    view, _, _, _ = rules.tick(view, DELAY + 0.1, DELAY)
    refused, actions, sentence, _ = rules.probed(
        view, "m", None, "timeout", DELAY + 0.2, DELAY, False
    )
    assert actions == [] and refused.phase == "refused" and "3 events behind" in str(sentence)
    _, forced, _, _ = rules.probed(view, "m", None, "timeout", DELAY + 0.2, DELAY, True)
    assert [type(a) for a in forced] == [rules.Promote]


def test_no_promotion_without_a_live_shadow() -> None:
    view = rules.observe(rules.View("c", started=-10), beat("m", "master"), 0.0)
    view, _, _, _ = rules.tick(view, DELAY + 0.1, DELAY)
    view, actions, sentence, _ = rules.probed(view, "m", None, "refused", DELAY + 0.2, DELAY, False)
    assert actions == [] and "no live shadow" in str(sentence)


def test_a_restarted_watchdog_waits_a_full_delay_and_learns_the_master_from_the_shadow() -> None:
    view = rules.View("c", started=100.0)
    view = rules.observe(view, beat("s", "shadow", peer="m", peer_url="http://m:8080"), 100.1)
    master = rules.master_of(view)
    assert master is not None and master.instance == "m"  # known only second-hand
    assert rules.tick(view, 100.0 + DELAY - 0.1, DELAY)[1] == []
    view = rules.observe(view, beat("s", "shadow", peer="m", peer_url="http://m:8080"), 102.0)
    assert rules.tick(view, 102.2, DELAY)[1] == [rules.Probe("m", "http://m:8080")]


def test_promotion_completes_when_the_shadow_beats_as_master_and_is_resent_otherwise() -> None:
    view = rules.observe(watching(), beat("s", "shadow", peer="m"), DELAY)
    view, _, _, _ = rules.tick(view, DELAY + 0.1, DELAY)
    view, [promote], _, _ = rules.probed(view, "m", None, "refused", DELAY + 0.2, DELAY, False)
    _, resent, sentence, _ = rules.tick(view, DELAY + 0.2 + 2 * DELAY + 0.1, DELAY)
    assert resent == [promote] and "sent again" in str(sentence)
    done = rules.observe(view, beat("s", "master", epoch=2, peer="m"), DELAY + 0.5)
    view, actions, sentence, _ = rules.tick(done, DELAY + 0.6, DELAY)
    assert actions == [] and view.phase == "watching" and "failover complete" in str(sentence)


def test_maintenance_mode_pauses_every_decision() -> None:
    view = rules.replace_maintenance(watching(), True)
    assert rules.tick(view, DELAY * 10, DELAY) == (view, [], None, None)


SECRET = "s3cret"


def command(**changes: Any) -> dict[str, Any]:
    return {
        "type": "promote",
        "shadow": "s",
        "epoch": 2,
        "command_id": "c1",
        "issued_at": 1000.0,
        "issued_by": "w",
        "reason": "test",
        **changes,
    }


def test_a_signed_command_verifies_and_any_change_breaks_it() -> None:
    signed = signing.sign(SECRET, command())
    signing.verify(SECRET, signed, now=1001.0, current_epoch=1)
    for tampered in (
        {**signed, "epoch": 3},
        {**signed, "shadow": "x"},
        {**signed, "signature": "00"},
    ):
        with pytest.raises(Forbidden, match="signature"):
            signing.verify(SECRET, tampered, now=1001.0, current_epoch=1)
    with pytest.raises(Forbidden, match="signature"):
        signing.verify("other", signed, now=1001.0, current_epoch=1)


def test_a_replayed_or_stale_command_is_refused() -> None:
    signed = signing.sign(SECRET, command())
    with pytest.raises(Forbidden, match="window"):
        signing.verify(SECRET, signed, now=1000.0 + 31, current_epoch=1)
    with pytest.raises(Forbidden, match="not newer"):
        signing.verify(SECRET, signed, now=1001.0, current_epoch=2)  # already applied: a replay


def test_signing_is_independent_of_key_order() -> None:
    a = signing.sign(SECRET, command())
    b = signing.sign(SECRET, dict(reversed(list(command().items()))))
    assert a["signature"] == b["signature"]


def test_a_master_that_answers_its_probes_is_probed_at_most_twice_per_delay() -> None:
    view, _, _, _ = rules.tick(watching(), DELAY + 0.1, DELAY)
    view, _, _, _ = rules.probed(view, "m", {"role": "master"}, "", DELAY + 0.2, DELAY, False)
    assert rules.tick(view, DELAY + 0.3, DELAY)[1] == []  # still silent, but it just answered
    assert rules.tick(view, DELAY + 0.2 + DELAY / 2 + 0.01, DELAY)[1] == [
        rules.Probe("m", "http://m:8080")
    ]


def _gone(view: rules.View) -> rules.Decision:
    view, _, _, _ = rules.tick(view, DELAY + 0.1, DELAY)
    return rules.probed(view, "m", None, "connection refused", DELAY + 0.2, DELAY, False)


def test_a_removed_shadow_that_still_claims_the_master_is_never_promoted() -> None:
    """The master's heartbeat names its shadow: after DELETE /ha/shadow and a new join, the old
    shadow (x) still says `shadow of m`, but only s may be promoted, by every watchdog."""
    view = rules.observe(watching(), beat("s", "shadow", peer="m"), DELAY)
    view = rules.observe(view, beat("x", "shadow", committed=3, peer="m"), DELAY)
    _, actions, _, _ = _gone(view)
    assert [a.shadow for a in actions if isinstance(a, rules.Promote)] == ["s"]
    only_x = rules.observe(rules.View("c", started=-10), beat("m", "master", peer="s"), 0.0)
    only_x = rules.observe(only_x, beat("x", "shadow", committed=3, peer="m"), DELAY)
    view, actions, sentence, _ = _gone(only_x)
    assert actions == [] and view.phase == "refused" and "no live shadow" in str(sentence)


def test_two_claimants_the_master_never_named_promote_no_one() -> None:
    view = rules.View("c", started=-10)  # a watchdog that never heard the master itself
    for name in ("s", "x"):
        view = rules.observe(view, beat(name, "shadow", peer="m", peer_url="http://m:8080"), 0.0)
        view = rules.observe(view, beat(name, "shadow", peer="m", peer_url="http://m:8080"), DELAY)
    _, actions, _, _ = _gone(view)
    assert not [a for a in actions if isinstance(a, rules.Promote)]


def test_every_decision_names_its_step_and_a_refusal_its_reason() -> None:
    _, _, _, probing = rules.tick(watching(), DELAY + 0.1, DELAY)
    view, _, _, _ = rules.tick(watching(), DELAY + 0.1, DELAY)
    alive = rules.probed(view, "m", {"role": "master"}, "", DELAY + 0.2, DELAY, False)
    lagging = watching(replication="async", shadow_committed=7)
    lagging = rules.observe(lagging, beat("s", "shadow", committed=7, peer="m"), DELAY)
    lagging, _, _, _ = rules.tick(lagging, DELAY + 0.1, DELAY)
    refused = rules.probed(lagging, "m", None, "probing promoting", DELAY + 0.2, DELAY, False)
    assert probing == rules.Step.PROBING
    assert alive.step == rules.Step.MASTER_ALIVE
    # the step is the rule's, not a word found in the sentence (which quotes the probe's error)
    assert refused.step == rules.Step.REFUSED
    assert refused.view.refusal == rules.Refusal.SHADOW_LAGGING
