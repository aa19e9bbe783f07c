"""The bounded labels of shadowline_rejected_commands_total and shadowline_fencings_total.

They are read from the sentences that domain.signing and instance.failover raise: these tests
produce each sentence with the real code (or copy it where it is built inline) so that a reworded
sentence shows here instead of silently landing in reason="other".
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest

from shadowline.adapters.metric_labels import (
    FENCE_REASONS,
    REJECT_REASONS,
    fence_reason,
    rejection_reason,
)
from shadowline.adapters.metrics import Metrics
from shadowline.application.failover import STARTING
from shadowline.domain import signing
from shadowline.domain.errors import Conflict, Forbidden

SECRET = "cluster-secret"


def _command(**changes: object) -> dict[str, object]:
    return {"type": "promote", "shadow": "b", "epoch": 2, "issued_at": time.time(), **changes}


def _refusal(secret: str, command: dict[str, object], epoch: int = 1) -> Forbidden:
    with pytest.raises(Forbidden) as caught:
        signing.verify(secret, signing.sign(SECRET, command), time.time(), epoch)
    return caught.value


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (lambda: _refusal("another-secret", _command()), "signature"),
        (lambda: _refusal(SECRET, _command(issued_at=time.time() - 120)), "expired"),
        (lambda: _refusal(SECRET, _command(epoch=2), epoch=2), "stale-epoch"),
        (lambda: Forbidden("command for 'z', not for this instance"), "wrong-instance"),
        (lambda: Forbidden("unknown command promote.b"), "malformed"),
        (
            lambda: Conflict("only a shadow can be promoted; this instance is master"),
            "not-a-shadow",
        ),
        (
            lambda: Conflict("the master handed over at position 7, this shadow is at 6"),
            "fork-mismatch",
        ),
    ],
)
def test_each_refused_promote_command_gets_its_own_reason(
    error: Callable[[], Exception], reason: str
) -> None:
    assert rejection_reason(error()) == reason
    assert reason in REJECT_REASONS


def test_a_command_that_is_not_json_is_counted_as_malformed() -> None:
    with pytest.raises(orjson.JSONDecodeError) as caught:
        orjson.loads(b"{not json")
    assert rejection_reason(caught.value) == "malformed"


@pytest.mark.parametrize(
    ("sentence", "reason"),
    [
        (STARTING, "starting"),
        ("heard a master in epoch 3, newer than 2", "newer-epoch"),
        ("no heartbeat confirmed by the broker for 1.2s (lease)", "lease-lost"),
        ("a newer master exists: rejoining as its shadow", "rejoining"),
    ],
)
def test_each_fencing_sentence_gets_its_own_reason(sentence: str, reason: str) -> None:
    assert fence_reason(sentence) == reason
    assert reason in FENCE_REASONS


def test_a_switch_roles_promotion_is_told_apart_from_a_failover() -> None:
    metrics = Metrics()
    metrics.promoted({"type": "promote", "epoch": 2})
    metrics.promoted({"type": "promote", "epoch": 3, "fork_position": 10})
    metrics.promoted({"type": "promote", "epoch": 4, "fork_position": 12})
    value = metrics.registry.get_sample_value
    assert value("shadowline_promotions_total", {"trigger": "failover"}) == 1
    assert value("shadowline_promotions_total", {"trigger": "switch-roles"}) == 2
