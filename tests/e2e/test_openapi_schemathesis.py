"""schemathesis over a real `shadowline instance` on its own database: every operation of the
OpenAPI document (GET /openapi.json), every check, a bounded number of examples each.

It sends what the document says is valid (and what it says is not) and holds the instance to
the document: the statuses, the bodies' schemas, the media types, refusals of what is invalid,
acceptance of what is valid, authentication that is not ignored, no 5xx.

What is left out, and why:
- The NDJSON streams (GET /events, /ha/peer/events, /ha/peer/image) and the text of /metrics
  are sent and must answer as documented, but their lines are not checked against a schema:
  OpenAPI has no schema for a stream of JSON documents (tests/integration/test_http_reads.py
  checks the envelopes).
- POST /ha/join is only ever refused here (409: the instance already holds a write, made
  before the run): a join that got as far as calling its `master_url` would send requests to
  whatever host was generated.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shadowline.adapters.migrate import drop_database
from tests.conftest import ADMIN_PASSWORD, _copy_template
from tests.e2e.conftest import Process, make_process

pytestmark = pytest.mark.e2e

EXAMPLES = 5  # per operation and phase: bounded, so the run stays within about a minute

# Run by schemathesis's own command (st run): its pytest plugin's lazy fixture loading does not
# run on pytest 9 (it sets Function._nodeid, which pytest no longer has).
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
CONFIG = f"""
hooks = "{HOOKS}"

[auth.basic]
username = "admin"
password = "{ADMIN_PASSWORD}"

# A valid request can be refused for the state it meets, not for its shape: 412 is
# If-None-Match: * meeting an item that exists, as 409 (in schemathesis's own list) is If-Match
# meeting another version. The rest is schemathesis's default list.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]

# PostgreSQL text cannot hold U+0000, so every string refuses it (422, "strings may not contain
# U+0000": tests/integration/test_http_writes.py), which the kinds' JSON Schemas do not say.
[generation]
allow-x00 = false

# GET /events?wait=N is a long poll (up to 60 s a request): sent without waiting.
[parameters]
"query.wait" = 0

# The probes' 503 is their answer by contract (DESIGN.md: not the writable master, not an
# in-sync shadow), documented with its body; a 500 there still fails.
[[operations]]
include-path-regex = "^/(master|shadow)$"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]
"""


@pytest.fixture
def fuzzed(template_database: str, tmp_path: Path) -> Iterator[Process]:
    """A standalone instance holding one write (so POST /ha/join is refused before it calls
    anyone), with a login throttle schemathesis's wrong passwords cannot trip (its own tests
    are in tests/integration/test_http_auth.py)."""
    url = asyncio.run(_copy_template(template_database))
    process = make_process(
        url,
        tmp_path / "instance.log",
        name="fuzzed",
        cluster=f"st{uuid.uuid4().hex[:8]}",
        SHADOWLINE_LOGIN_MAX_FAILURES="1000000",
    )
    process.start()
    try:
        process.wait_healthy(60)
        seed = httpx.put(
            f"{process.url}/config/subaccount/seed",
            json={"region": "eu10", "subaccount_id": "seed"},
            auth=("admin", ADMIN_PASSWORD),
        )
        assert seed.status_code == 201, seed.text
        yield process
    finally:
        process.stop()
        asyncio.run(drop_database(url))


def test_every_operation_answers_as_the_openapi_document_says(
    fuzzed: Process, tmp_path: Path
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "--config-file",
            str(config),
            "run",
            f"{fuzzed.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            os.environ.get("SCHEMATHESIS_SEED", "1"),
            "--continue-on-failure",
            "--request-timeout",
            "30",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    print(run.stdout[-3000:])  # the summary: operations, phases, cases
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-2000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
    tested = re.search(r"Tested: (\d+)", run.stdout)
    assert selected and tested, run.stdout[-3000:]
    assert selected[1] == selected[2] == tested[1], run.stdout[-3000:]  # every operation ran
    assert re.search(r"(\d+) generated, \1 passed", run.stdout), run.stdout[-3000:]
