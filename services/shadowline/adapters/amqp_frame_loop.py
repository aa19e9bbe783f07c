"""The lean consumer's frame loop (adapters.amqp_consumer): AMQP 0-9-1 frames read in place
off the socket, each delivery decoded only as far as the watchdog needs (exchange, routing key,
the headers table, the body) and handed on synchronously; every other method goes through pamqp
to the consumer's setup queue."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any, cast

from pamqp import commands, decode, frame
from pamqp.base import Frame

from shadowline.adapters import amqp_frames
from shadowline.domain import trust

log = logging.getLogger("shadowline.watchdog")

Delivery = Callable[[str, str, dict[str, Any], bytes], None]  # exchange, key, headers, body
# Seconds, proposed to the broker (the lower of its own and this is used): a broker node that
# freezes (SIGSTOP, a stalled VM) is given up after two silent intervals, then the next node.
HEARTBEAT = 5
_HEAD = struct.Struct(">BHI")
_DELIVER = struct.pack(">HH", 60, 60)  # Basic.Deliver: class 60, method 60
HEADERS_FLAG = 1 << 13  # the content header's property flags: the headers table is present
FRAME_END = 0xCE
FRAME_MAX = 131_072  # RabbitMQ's default; the handshake takes the broker's if lower
MAX_KEPT = trust.MAX_MESSAGE  # bytes of a body kept: one more than this and it is refused


class FrameLoop(asyncio.Protocol):
    """The frame loop. Whatever a publisher put in a message (any broker user may publish to a
    heartbeat exchange) costs that message only: a headers table pamqp cannot read or a routing
    key that is not UTF-8 is delivered marked as adapters.amqp_frames does (and refused, since
    no MAC matches it); a handler that raises drops the one delivery, counted and logged. What only
    the broker writes (frame ends, sizes within frame_max, methods) is checked too; a broken
    stream closes the connection, and the next sweep opens a fresh one."""

    def __init__(self, deliver: Delivery) -> None:
        self._deliver = deliver
        self._buffer = bytearray()
        self.frames: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()
        self.heard = 0.0
        self.interval = HEARTBEAT  # the AMQP heartbeat agreed on
        self.frame_max = FRAME_MAX  # lowered to the broker's in the handshake
        self.dropped = 0  # deliveries that could not be read or handled
        self.broken: str | None = None  # why the stream was given up, if it was
        self._pending: tuple[str, str] | None = None
        self._headers: dict[str, Any] = {}
        self._size = 0
        self._kept = 0
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not its subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc or (ConnectionError(self.broken) if self.broken else None))
        self.frames.put_nowait(None)

    def data_received(self, data: bytes) -> None:
        if self.broken is not None:
            return
        self.heard = asyncio.get_running_loop().time()
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 8:
            kind, _channel, size = _HEAD.unpack_from(buffer, start)
            if size > self.frame_max:
                return self._break(f"a frame of {size} bytes (frame_max {self.frame_max})")
            end = start + 7 + size
            if len(buffer) < end + 1:
                break
            if buffer[end] != FRAME_END:
                return self._break(f"frame end 0x{buffer[end]:02x}, not 0xce")
            payload = bytes(buffer[start + 7 : end])
            start = end + 1
            if kind == 1:
                self._method(payload, buffer[start - size - 8 : start])
            elif kind == 2:
                self._guarded(self._header, payload)
            elif kind == 3:
                self._guarded(self._content, payload)
            if self.broken is not None:
                return
        del buffer[:start]

    def _break(self, why: str) -> None:
        self.broken = why
        log.warning("heartbeat consumer: the broker's stream is broken (%s); reconnecting", why)
        self._buffer.clear()
        if self.transport is not None:
            self.transport.close()

    def _guarded(self, step: Callable[[bytes], None], payload: bytes) -> None:
        """One step of a delivery; an error costs that delivery only."""
        try:
            step(payload)
        except Exception as error:
            self._drop(error)

    def _drop(self, error: Exception) -> None:
        self.dropped += 1
        self._pending, self._headers, self._body = None, {}, []
        if self.dropped & (self.dropped - 1) == 0:  # the 1st, 2nd, 4th, 8th, ...: no flood
            log.warning("heartbeat consumer dropped a delivery it could not read or handle "
                        "(%d so far): %r", self.dropped, error)  # fmt: skip

    def _method(self, payload: bytes, raw: bytes | bytearray) -> None:
        if payload[:4] == _DELIVER:
            try:
                self._start_delivery(payload)
            except Exception as error:  # a Deliver cut short
                self._drop(error)
            return
        try:
            found = frame.unmarshal(bytes(raw))[2]
        except Exception as error:
            return self._break(f"a method frame pamqp cannot read: {error!r}")
        if isinstance(found, commands.Connection.Close | commands.Channel.Close):
            log.warning("heartbeat consumer closed by the broker: %s %s",
                        found.reply_code, found.reply_text)  # fmt: skip
            if self.transport is not None:
                self.transport.close()
        elif isinstance(found, commands.Basic.Cancel):  # a queue deleted under us
            log.warning("heartbeat consumer cancelled by the broker; reconnecting")
            if self.transport is not None:
                self.transport.close()
        self.frames.put_nowait(found)  # type: ignore[arg-type]

    def _start_delivery(self, payload: bytes) -> None:
        at = 4
        at += 1 + payload[at]  # consumer tag
        at += 9  # delivery tag, redelivered
        exchange = payload[at + 1 : at + 1 + payload[at]].decode()
        at += 1 + payload[at]
        routing_key = payload[at + 1 : at + 1 + payload[at]].decode("utf-8", "replace")
        self._pending, self._headers, self._body = (exchange, routing_key), {}, []
        self._size = self._kept = 0

    def _header(self, payload: bytes) -> None:
        _class, _weight, self._size, flags = struct.unpack_from(">HHQH", payload)
        at = 14
        if flags & (1 << 15):  # content type
            at += 1 + payload[at]
        if flags & (1 << 14):  # content encoding
            at += 1 + payload[at]
        if flags & HEADERS_FLAG and self._pending is not None:
            if len(payload) > amqp_frames.MAX_PROPERTIES:  # as adapters.amqp_frames: not read
                self._headers = {amqp_frames.UNREADABLE: "properties too large, not read"}
                return self._done() if self._size == 0 else None
            try:
                self._headers = decode.field_table(payload[at:])[1]
            except Exception as error:  # as adapters.amqp_frames: delivered, marked, refused
                self._headers = {amqp_frames.UNREADABLE: str(error)[:200]}
        if self._size == 0:
            self._done()

    def _content(self, payload: bytes) -> None:
        self._size -= len(payload)
        # No more than one byte past the largest message is kept: the check of its size
        # (domain.trust) refuses it all the same, and a huge body costs no memory here.
        if self._pending is not None and self._kept <= MAX_KEPT:
            self._body.append(payload[: MAX_KEPT + 1 - self._kept])
            self._kept += len(self._body[-1])
        if self._size <= 0:
            self._done()

    def _done(self) -> None:
        if self._pending is not None:
            exchange, routing_key = self._pending
            self._pending = None
            self._deliver(exchange, routing_key, self._headers, b"".join(self._body))

    def send(self, command: Any, channel: int = 0) -> None:
        assert self.transport is not None
        self.transport.write(frame.marshal(command, channel))
