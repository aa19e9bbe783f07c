"""One exception tree for the whole program; the HTTP layer maps it to status codes in one place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ShadowlineError(Exception):
    """Root of every error shadowline raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str


class InvalidInput(ShadowlineError):
    """Raised when a value, kind or name fails validation; carries one error per JSON path."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.path}: {e.message}" for e in self.errors))


class VersionConflict(ShadowlineError):
    """Raised when a write names an expected version that is not the item's current version."""

    def __init__(self, key: str, expected: int | None, actual: int | None) -> None:
        self.key, self.expected, self.actual = key, expected, actual
        if actual is None:  # never created, or deleted: there is no version to match
            super().__init__(
                f"{key} does not exist, so it has no version {expected} "
                "(If-None-Match: * creates an item only if it is absent)"
            )
        else:
            super().__init__(f"{key}: expected version {expected}, current version is {actual}")


class PreconditionFailed(ShadowlineError):
    """Raised when a write asked to create only (If-None-Match: *) and the item exists."""

    def __init__(self, key: str, actual: int) -> None:
        self.key, self.actual = key, actual
        super().__init__(f"{key} exists (version {actual}); If-None-Match: * creates only")


class NotFound(ShadowlineError):
    """Raised when an item, user or position that was asked for does not exist."""


class NotWritable(ShadowlineError):
    """Raised when this instance may not write (a shadow, a fenced master); names the master."""

    def __init__(self, reason: str, master_url: str | None = None) -> None:
        self.master_url = master_url
        super().__init__(reason)


class NotAcknowledged(NotWritable):
    """Raised when a write is stored here but may not be acknowledged (the shadow did not
    apply it in time, the lease ran out, the roles changed): its outcome is unknown. It stays
    if this master stays, is quarantined if a newer master took over without it, and may
    already be on the shadow. So it is never reported as refused: a client must look before
    sending it again."""


class Unavailable(ShadowlineError):
    """Raised when a dependency (the database) failed, so the outcome of a write is unknown;
    or when a master cannot vouch for what a read would show (application.service)."""


class PeerUnreachable(Unavailable):
    """Raised when no connection to the peer could be made: the request was certainly not
    received (unlike a timeout or an unauthenticated answer, after which it may have been)."""


class Unauthenticated(Unavailable):
    """Raised when a message or a peer's answer is not authenticated with the cluster's keys
    (forged, tampered, replayed, or another secret); it is never acted on."""


class ConcurrentWriter(Unavailable):
    """Raised when another process appended to this store: its head moved under our writer."""


class AlreadyExists(ShadowlineError):
    """Raised when creating something (a user) that already exists."""


class Unauthorized(ShadowlineError):
    """Raised when a request carries no valid credentials."""


class Forbidden(ShadowlineError):
    """Raised when the authenticated user's role does not allow the request."""


class PeerRefused(ShadowlineError):
    """Raised when the peer answered a 4xx: it understood and said no (message from the peer)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class Conflict(ShadowlineError):
    """Raised when the HA state does not allow a request (a second shadow, confirming nothing);
    names the master when asking it instead is the way (switch roles sent to the shadow)."""

    def __init__(self, reason: str, master_url: str | None = None) -> None:
        self.master_url = master_url
        super().__init__(reason)


class PromotionAborted(Conflict):
    """Raised when SHADOWLINE_BEFORE_PROMOTE failed or timed out: the shadow stays a read-only
    shadow and no epoch was claimed (application.hooks has alerted and announced it)."""


class Gap(ShadowlineError):
    """Raised when replicated events do not start right after the local head."""

    def __init__(self, expected: int, got: int) -> None:
        self.expected, self.got = expected, got
        super().__init__(f"replication gap: expected position {expected}, got {got}")


class Divergence(ShadowlineError):
    """Raised when a replicated event does not extend the local hash chain, or breaks a rule
    the master enforces (a version out of sequence, an older epoch, a local-only kind)."""

    def __init__(self, position: int, reason: str) -> None:
        self.position = position
        super().__init__(f"position {position}: {reason}")


class BackupRefused(ShadowlineError):
    """Raised when `shadowline backup` or `restore` will not go on: an archive that is not whole,
    not authentic or not consistent, or a target that may not take it (the sentence says why)."""
