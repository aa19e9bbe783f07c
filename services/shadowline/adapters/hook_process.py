"""Running a hook's command: without a shell, off the event loop's back, within a timeout, its
output logged and bounded.

The command runs in a session of its own, so a timeout kills what it started too (a hook that
backgrounds a child must not outlive its bound, nor hold the pipe open for ever). Its output
(stdout and stderr together) is read as it comes, never buffered whole: the first lines are
kept and logged, the rest is counted and dropped, so a chatty hook costs nothing but a counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping

from shadowline.domain.hooks import (
    OUTPUT_LINE_CHARS,
    OUTPUT_LINES,
    HookCall,
    HookResult,
    Outcome,
)

log = logging.getLogger("shadowline.hooks")

READ_AFTER_EXIT = 1.0  # seconds the output is still read after the hook exited (a child may
# hold the pipe: it is not waited for)


class HookProcess:
    """Runs one hook's command line (HookCall.argv) as `instance` of `cluster`."""

    def __init__(self, instance: str, cluster: str, environ: Mapping[str, str] | None = None):
        self._instance = instance
        self._cluster = cluster
        self._environ = environ if environ is not None else os.environ

    async def run(self, command: str, call: HookCall, timeout: float) -> HookResult:  # noqa: ASYNC109
        started = time.monotonic()
        # Our own pipe, not asyncio's PIPE: asyncio's wait() also waits for the pipes to close,
        # which a child the hook left running could hold off for ever.
        read_end, write_end = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *call.argv(command),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_end,
                stderr=write_end,
                env=call.env(self._environ, self._instance, self._cluster),
                start_new_session=True,
            )
        except OSError as error:
            os.close(read_end)
            return HookResult(Outcome.ERROR, None, time.monotonic() - started, error=str(error))
        finally:
            os.close(write_end)
        output = _Output(call.hook)
        reader = asyncio.create_task(output.read(read_end))
        try:
            code = await _wait(process, timeout)
        finally:
            _kill_group(process.pid)  # whatever it left running in its session
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), READ_AFTER_EXIT)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        seconds = time.monotonic() - started
        outcome = Outcome.TIMEOUT if code is None else Outcome.OK if code == 0 else Outcome.FAILED
        return HookResult(outcome, code, seconds, tuple(output.lines), output.dropped)


async def _wait(process: asyncio.subprocess.Process, timeout: float) -> int | None:  # noqa: ASYNC109
    """The exit code, or None after killing its process group at the timeout (and when the
    instance stops meanwhile: the hook must not outlive it)."""
    try:
        return await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        _kill_group(process.pid)
        await process.wait()
        return None
    except asyncio.CancelledError:
        _kill_group(process.pid)
        raise


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _Output:
    """The hook's output: each of the first OUTPUT_LINES lines logged as it comes and kept."""

    def __init__(self, hook: str) -> None:
        self._hook = hook
        self.lines: list[str] = []
        self.dropped = 0

    async def read(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(fd, "rb", buffering=0)
        )
        try:
            await self._consume(stream)
        finally:
            transport.close()

    async def _consume(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(64 * 1024):
            if len(self.lines) >= OUTPUT_LINES:
                self.dropped += len(chunk)
                continue
            for raw in chunk.splitlines():
                if len(self.lines) >= OUTPUT_LINES:
                    self.dropped += len(raw)
                    continue
                line = raw.decode(errors="replace")[:OUTPUT_LINE_CHARS]
                self.lines.append(line)
                log.info("%s hook: %s", self._hook, line)
