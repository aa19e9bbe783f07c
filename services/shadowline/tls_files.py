"""The checks of the TLS settings' files, run once at start-up (settings): a pair that cannot
serve or a CA file that cannot be loaded is a start error naming the file, never a handshake
failure later. Beside settings, not in adapters: the watchdog and the application read settings.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def server_problem(cert: str | None, key: str | None) -> str | None:
    """Why this certificate and key cannot serve HTTPS (None: they can, or neither is set)."""
    if (cert is None) != (key is None):
        given, missing = ("TLS_CERT", "TLS_KEY") if key is None else ("TLS_KEY", "TLS_CERT")
        return f"SHADOWLINE_{given} is set without SHADOWLINE_{missing}: set both or neither"
    if cert is None or key is None:
        return None
    for name, path in (("TLS_CERT", cert), ("TLS_KEY", key)):
        if not Path(path).is_file():
            return f"SHADOWLINE_{name} {path}: no such readable file"
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as error:
        return f"SHADOWLINE_TLS_CERT {cert} and SHADOWLINE_TLS_KEY {key} cannot be used: {error}"
    return None


def trust_problem(ca_file: str | None) -> str | None:
    """Why SHADOWLINE_CA_FILE cannot be used as a trust store (None: it can, or it is unset)."""
    if ca_file is None:
        return None
    try:
        ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError) as error:
        return f"SHADOWLINE_CA_FILE {ca_file}: not a file of PEM certificates ({error})"
    return None
