"""A private RabbitMQ node, for the tests and benchmarks that stop, kill and restart the broker.

The shared node (rabbit@localhost on 5672) must never be touched, so this node has its own
name, AMQP and distribution ports, data and log directories, config file (the system one binds
5672), environment file (the system one names rabbit@localhost) and Erlang cookie (in a HOME of
its own, which both the server and `rabbitmqctl` read). It is started from the real scripts in
/usr/lib/rabbitmq/bin, not the /usr/sbin wrappers, which `su` to the rabbitmq user and drop this
environment. A restart reuses the same ports and data directory, so durable queues and their
messages survive it, as on a real broker. Nodes of one cluster (harness.rabbit_cluster) are
given the same cookie and extra config lines, and may be launched side by side.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import aio_pika

from shadowline.harness.processes import free_port

SCRIPTS = Path(os.environ.get("SHADOWLINE_TEST_RABBITMQ_SCRIPTS", "/usr/lib/rabbitmq/bin"))


def rabbitmq_problem() -> str | None:
    """Why a private node cannot run here, or None."""
    missing = [s for s in ("rabbitmq-server", "rabbitmqctl") if not (SCRIPTS / s).exists()]
    if missing:
        return f"no {', '.join(missing)} in {SCRIPTS}"
    if shutil.which("erl") is None:
        return "no Erlang runtime (erl) on PATH"
    return None


class RabbitNode:
    """One RabbitMQ node in `base`; start, stop and start again on the same ports and data."""

    def __init__(self, base: Path, *, cookie: str | None = None, config: str = "") -> None:
        self.base = base
        self.cookie = cookie or secrets.token_hex(16)
        self.config = config  # rabbitmq.conf lines after the listener
        self.name = f"sl-test-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.log = base / "rabbitmq.out"
        self._server: subprocess.Popen[bytes] | None = None
        self._prepare()

    def _prepare(self) -> None:
        home = self.base / "home"
        for directory in (home, self.base / "mnesia", self.base / "log"):
            directory.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq-env.conf").write_text("")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n{self.config}"
        )

    @property
    def env(self) -> dict[str, str]:
        base = self.base
        return {
            **os.environ,
            "HOME": str(base / "home"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        }

    def start(self, timeout: float = 60) -> None:
        self.launch()
        self._wait_for_amqp(timeout)

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    @property
    def pid(self) -> int | None:
        """The server script's process id, also the id of the process group of the node's
        every process (the Erlang VM and its helpers); None when it is not running."""
        return self._server.pid if self._server is not None and self.running else None

    def launch(self) -> None:
        """Start the server without waiting for it (`wait_ready` waits)."""
        assert not self.running, "already running"
        with self.log.open("ab") as out:
            self._server = subprocess.Popen(
                [str(SCRIPTS / "rabbitmq-server")],
                env=self.env,
                stdout=out,
                stderr=out,
                start_new_session=True,  # its own process group, so teardown can end it all
            )

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the node accepts AMQP connections; RuntimeError if it exits first."""
        self._wait_for_amqp(timeout)

    def ctl(self, *args: str, tool: str = "rabbitmqctl", timeout: float = 60) -> str:
        """`tool -n NODE ARGS` (rabbitmqctl, rabbitmq-queues, ...) on this node; its output, or
        RuntimeError with what it said (or that it did not answer in time)."""
        try:
            done = subprocess.run(
                [str(SCRIPTS / tool), "-n", self.name, *args],
                env=self.env,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{tool} {' '.join(args)} on {self.name}: no answer") from None
        if done.returncode != 0:
            said = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"{tool} {' '.join(args)} on {self.name}: {said}")
        return done.stdout.decode(errors="replace")

    def signal(self, signum: int) -> None:
        """`signum` to every process of the node (its group): SIGKILL, SIGSTOP, SIGCONT."""
        assert self._server is not None and self._server.poll() is None, "not running"
        os.killpg(self._server.pid, signum)
        if signum == signal.SIGKILL:
            self._server.wait()

    def _wait_for_amqp(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._server is not None
            if self._server.poll() is not None:
                raise RuntimeError(f"RabbitMQ node exited:\n{self.log.read_text()[-3000:]}")
            if asyncio.run(_accepts_amqp(self.url)):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ node not up after {timeout}s")
            time.sleep(0.2)

    def stop(self, timeout: float = 30) -> None:
        """Stop the node the way an operator does, and make sure its processes are gone."""
        server = self._server
        if server is None or server.poll() is not None:
            return
        try:
            subprocess.run(
                [str(SCRIPTS / "rabbitmqctl"), "-n", self.name, "stop"],
                env=self.env,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
            server.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # The server script is unreaped, so its process group id cannot have been reused.
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


async def _accepts_amqp(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:  # the port first: aio-pika logs an error for every refused connection
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    try:
        connection = await aio_pika.connect(url, timeout=2)
    except Exception:
        return False
    await connection.close()
    return True
