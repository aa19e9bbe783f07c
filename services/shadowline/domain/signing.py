"""HMAC-SHA256 signatures of commands (promote) with the cluster's command key.

The key is derived from the cluster secret for commands only (`domain.keys`), so no other
message of the cluster can pass for a command. A command is signed over its canonical JSON
(sorted keys, without the signature itself); the
receiver also checks the timestamp window and that the epoch is newer than its own, so a
replayed command is refused even within the window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from shadowline.domain import keys
from shadowline.domain.errors import Forbidden

WINDOW: Final = 30.0
SIGNATURE: Final = "signature"


def canonical(command: Mapping[str, Any]) -> bytes:
    return orjson.dumps(
        {k: v for k, v in command.items() if k != SIGNATURE}, option=orjson.OPT_SORT_KEYS
    )


def sign(secret: str, command: Mapping[str, Any]) -> dict[str, Any]:
    return {**command, SIGNATURE: keys.mac(secret, keys.COMMAND, canonical(command))}


def verify(secret: str, command: Mapping[str, Any], now: float, current_epoch: int) -> None:
    """Raise Forbidden unless the command is authentic, fresh and about a newer epoch."""
    if not keys.valid(secret, keys.COMMAND, canonical(command), command.get(SIGNATURE)):
        raise Forbidden("command signature does not verify (forged, tampered, or another secret)")
    issued = command.get("issued_at")
    if not isinstance(issued, int | float) or abs(now - issued) > WINDOW:
        raise Forbidden(
            f"command issued at {issued} is outside the {WINDOW:.0f}s window (replayed?)"
        )
    epoch = command.get("epoch")
    if not isinstance(epoch, int) or epoch <= current_epoch:
        raise Forbidden(
            f"command for epoch {epoch} is not newer than epoch {current_epoch} (replayed?)"
        )
