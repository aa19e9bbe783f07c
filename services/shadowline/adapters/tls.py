"""TLS: the instance's own certificate, the trust its outgoing calls use, and self-signed pairs.

Each instance serves HTTPS with its own certificate and key (SHADOWLINE_TLS_CERT and
SHADOWLINE_TLS_KEY, never replicated); its calls to a peer and the watchdog's probes check the
peer's certificate against the system's CAs, or against SHADOWLINE_CA_FILE when it is set (a
private CA, or the bundle of the instances' self-signed certificates as `shadowline demo --tls`
writes). A self-signed certificate is its own trust anchor: put in a CA file it is trusted for
exactly the names it carries.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@functools.cache
def client_context(ca_file: str | None) -> ssl.SSLContext:
    """What outgoing HTTPS calls verify peers with: the CA file's certificates, else the
    system's. Host names are always checked: a certificate is good only for its own names.
    One per file and process: loading a CA bundle takes tens of milliseconds, and a peer client
    is made per call of some kinds."""
    return ssl.create_default_context(cafile=ca_file)


def self_signed(folder: Path, name: str, hosts: list[str], days: int = 365) -> tuple[Path, Path]:
    """A self-signed certificate for `hosts` (names or IP addresses) and its key, written as
    `<name>.crt` and `<name>.key` in `folder` (the key readable by its owner only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        # A trust anchor of itself (OpenSSL checks a self-signed certificate in a CA file so).
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.chmod(0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
