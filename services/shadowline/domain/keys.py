"""The cluster's keys: one HMAC-SHA256 key per purpose, derived from the cluster secret.

The broker is a transport, never a trust root: anyone with a broker login can publish. So every
message and peer answer an instance or a watchdog acts on carries a MAC made with a key that
only holders of SHADOWLINE_CLUSTER_SECRET can derive. Each purpose has its own key (HKDF with
the purpose as `info`), so a MAC made for one use (a heartbeat, say) never verifies as another
(a promote command, an event): a captured message cannot be re-aimed.

Why shared-secret MACs and not per-instance Ed25519 key pairs: the cluster secret already is
the root of trust (it signs promote commands and every instance-to-instance call, and whoever
holds it can promote), so per-instance keys would not shrink who can take the cluster over;
they would add key exchange, pinning and rotation, which belong with the per-instance TLS
certificates. Their one gain, letting external monitoring verify without being able to forge,
is left for then; monitoring reads with a read-only broker user and needs no key.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

COMMAND: Final = "command"  # promote commands (body field `signature`)
PEER_REQUEST: Final = "peer-request"  # instance-to-instance and watchdog-to-instance requests
PEER_ANSWER: Final = "peer-answer"  # the answers to those requests, bound to each request
HEARTBEAT: Final = "heartbeat"  # heartbeat.<instance> on the monitoring exchange
MONITORING: Final = "monitoring"  # role.changed, failover.<step>, alert.<name>, config.changed
EVENT: Final = "event"  # each event's chain value: who holds the key wrote the log
BACKUP: Final = "backup"  # a backup archive's MAC (domain.backup): no event key can forge one

PURPOSES: Final = frozenset(
    {COMMAND, PEER_REQUEST, PEER_ANSWER, HEARTBEAT, MONITORING, EVENT, BACKUP}
)

SALT: Final = b"shadowline cluster keys v1"


@lru_cache(maxsize=256)
def derive(secret: str, purpose: str) -> bytes:
    """The 32-byte key for `purpose` (HKDF-SHA256, info "shadowline/v1/<purpose>")."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown key purpose {purpose!r}")
    kdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=SALT, info=f"shadowline/v1/{purpose}".encode()
    )
    return kdf.derive(secret.encode())


def mac(secret: str, purpose: str, message: bytes) -> str:
    """HMAC-SHA256 of `message` with the purpose's key, as hex."""
    return hmac.new(derive(secret, purpose), message, hashlib.sha256).hexdigest()


def valid(secret: str, purpose: str, message: bytes, given: object) -> bool:
    """Whether `given` is the MAC of `message` for `purpose` (constant-time)."""
    return isinstance(given, str) and hmac.compare_digest(mac(secret, purpose, message), given)


def parts(*fields: bytes | str) -> bytes:
    """Unambiguous concatenation (each part length-prefixed) of the fields a MAC covers."""
    out = bytearray()
    for field in fields:
        data = field.encode() if isinstance(field, str) else field
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)
