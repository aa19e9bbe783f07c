"""Config kinds and names: which kinds replicate, which stay local to each instance."""

from __future__ import annotations

import re
from typing import Final

REPLICATED_KINDS: Final = frozenset({"subaccount", "system-mapping", "resource"})
LOCAL_KINDS: Final = frozenset({"log-level", "ui-certificate", "snc"})
ALL_KINDS: Final = REPLICATED_KINDS | LOCAL_KINDS

NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def item_key(kind: str, name: str) -> str:
    return f"{kind}/{name}"


def split_key(key: str) -> tuple[str, str]:
    kind, _, name = key.partition("/")
    return kind, name
