"""The sync monitoring iterator (`shadowline.client.monitor`) as a script uses it: Ctrl-C ends it
with KeyboardInterrupt, its connection closed, not with an error from its event loop thread."""

from __future__ import annotations

import subprocess
import sys
import uuid

from tests.conftest import AMQP_URL

SCRIPT = """
import os, signal, sys, threading, time
from shadowline.client import monitor

def interrupt():
    time.sleep(1.5)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=interrupt, daemon=True).start()
try:
    for message in monitor(sys.argv[1], sys.argv[2], wait_for_cluster=30):
        print(message)
except KeyboardInterrupt:
    print("interrupted cleanly")
"""


def test_ctrl_c_ends_the_sync_monitor_with_keyboard_interrupt(rabbitmq: None) -> None:
    cluster = f"t{uuid.uuid4().hex[:10]}"  # no such cluster: the iterator waits for it
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, AMQP_URL, cluster],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "interrupted cleanly", done.stderr
    assert "Traceback" not in done.stderr, done.stderr
