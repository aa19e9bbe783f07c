"""HTTPS with each instance's own certificate: real processes, real TLS handshakes.

Each instance gets its own self-signed certificate; SHADOWLINE_CA_FILE holds both, so each
instance's calls to its peer (join, history, probes) and the tests' clients check the other's
certificate. Plain HTTP stays the default (every other end-to-end test).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from shadowline import harness
from shadowline.adapters.tls import self_signed
from shadowline.harness import HarnessError
from shadowline.harness.cluster import in_sync
from tests.conftest import ADMIN_PASSWORD, delete_cluster_topology
from tests.e2e.conftest import Pair, make_process

pytestmark = pytest.mark.e2e

HOSTS = ["127.0.0.1", "localhost"]
MAPPING = {
    "virtual_host": "erp.virtual",
    "virtual_port": 443,
    "internal_host": "erp.internal",
    "internal_port": 8443,
    "protocol": "HTTPS",
}


def _certificates(folder: Path, *names: str) -> tuple[dict[str, dict[str, str]], Path]:
    """Each name's own certificate settings, and the CA file that trusts them all."""
    settings, bundle = {}, folder / "trusted.pem"
    for name in names:
        cert, key = self_signed(folder, name, HOSTS)
        settings[name] = {"SHADOWLINE_TLS_CERT": str(cert), "SHADOWLINE_TLS_KEY": str(key)}
        with bundle.open("a") as out:
            out.write(cert.read_text())
    return settings, bundle


@pytest.fixture
async def tls_pair(
    db_factory: Callable[[], Awaitable[str]], rabbitmq: None, tmp_path: Path
) -> AsyncIterator[Pair]:
    cluster = f"e2e{uuid.uuid4().hex[:8]}"
    own, bundle = _certificates(tmp_path / "tls", "master", "shadow")
    nodes = [
        make_process(
            await db_factory(),
            tmp_path / f"{name}.log",
            name=name,
            cluster=cluster,
            SHADOWLINE_CA_FILE=str(bundle),
            **own[name],
        )
        for name in ("master", "shadow")
    ]
    yield Pair(nodes[0], nodes[1], cluster)
    for process in reversed(nodes):
        process.stop()
    await delete_cluster_topology(cluster, ["shadow"])


def test_a_pair_over_https_joins_and_replicates_checking_each_others_certificate(
    tls_pair: Pair,
) -> None:
    master, shadow = tls_pair.master, tls_pair.shadow
    assert master.url.startswith("https://") and shadow.url.startswith("https://")
    harness.start_all((master, shadow))
    harness.set_up_ha(master, shadow, ADMIN_PASSWORD)
    harness.call(master, ADMIN_PASSWORD, "PUT", "/config/system-mapping/erp", MAPPING)
    harness.wait_for(lambda: in_sync(master, shadow, ADMIN_PASSWORD), 60, "the shadow in sync")
    assert harness.call(shadow, ADMIN_PASSWORD, "GET", "/config/system-mapping/erp")["value"] == (
        MAPPING
    )
    seen = harness.call(shadow, ADMIN_PASSWORD, "GET", "/ha")["master"]
    assert seen["url"] == master.url  # the advertised URL defaults to https
    assert "serving HTTPS on" in master.text()


def test_an_https_instance_refuses_plain_http_and_untrusting_clients(tls_pair: Pair) -> None:
    master = tls_pair.master
    master.start()
    master.wait_healthy()
    with pytest.raises(httpx.HTTPError):
        httpx.get(master.url.replace("https://", "http://") + "/health", timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{master.url}/health", timeout=5)  # the system's CAs do not know it
    answer = httpx.get(f"{master.url}/health", timeout=5, verify=master.verify)
    assert answer.status_code == 200 and answer.json()["instance"] == "master"
    context = ssl.create_default_context(cafile=master.env["SHADOWLINE_TLS_CERT"])
    with (
        socket.create_connection(("127.0.0.1", master.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        served = tls.getpeercert(binary_form=True)
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    own = Path(master.env["SHADOWLINE_TLS_CERT"]).read_text()
    assert served == ssl.PEM_cert_to_DER_cert(own)  # its own certificate, not another's


def test_a_shadow_that_does_not_trust_the_masters_certificate_cannot_join(
    tls_pair: Pair, tmp_path: Path
) -> None:
    master, shadow = tls_pair.master, tls_pair.shadow
    # The shadow trusts only its own certificate: the master's is nobody it knows.
    shadow.env["SHADOWLINE_CA_FILE"] = shadow.env["SHADOWLINE_TLS_CERT"]
    harness.start_all((master, shadow))
    harness.call(master, ADMIN_PASSWORD, "POST", "/ha/enable", {})
    join = {"master_url": master.url, "user": "admin", "password": ADMIN_PASSWORD}
    with pytest.raises(HarnessError, match="CERTIFICATE_VERIFY_FAILED"):
        harness.call(shadow, ADMIN_PASSWORD, "POST", "/ha/join", join)
    assert harness.call(master, ADMIN_PASSWORD, "GET", "/ha")["shadow"] is None


def _start(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shadowline", "instance"],
        env={**os.environ, "SHADOWLINE_HTTP_BIND": "127.0.0.1:0", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unusable_tls_settings_end_the_start_with_one_clear_line(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "one", HOSTS)
    other_cert, _ = self_signed(tmp_path, "other", HOSTS)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = {
        "set without SHADOWLINE_TLS_KEY": {"SHADOWLINE_TLS_CERT": str(cert)},
        "set without SHADOWLINE_TLS_CERT": {"SHADOWLINE_TLS_KEY": str(key)},
        "no such readable file": {
            "SHADOWLINE_TLS_CERT": str(tmp_path / "absent.crt"),
            "SHADOWLINE_TLS_KEY": str(key),
        },
        "cannot be used": {"SHADOWLINE_TLS_CERT": str(other_cert), "SHADOWLINE_TLS_KEY": str(key)},
        "SHADOWLINE_CA_FILE": {"SHADOWLINE_CA_FILE": str(garbage)},
    }
    for words, env in cases.items():
        done = _start(**env)
        assert done.returncode == 2, (words, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_self_signed_certificate_is_trusted_only_for_its_own_names(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "one", ["127.0.0.1"])
    context = ssl.create_default_context(cafile=str(cert))
    assert context.get_ca_certs()[0]["subjectAltName"] == (("IP Address", "127.0.0.1"),)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
