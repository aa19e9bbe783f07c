"""One publisher's bytes cost its own message, never the connection that carries it.

RabbitMQ hands a message's content header (its properties, the headers table among them) and
its routing key to every consumer as the publisher wrote them; it reads neither for a topic
exchange. pamqp refuses a table with a key that is not UTF-8 or a field type AMQP does not
have, or a routing key that is not UTF-8, and aiormq answers any frame pamqp refuses by closing
the whole connection (InvalidFrameError): every channel on it, the master's heartbeat publisher
(its lease) among them, and for an acknowledged queue the message comes back after the
reconnection and closes it again. So anyone allowed to publish to a cluster's exchange could
cut its instances off the broker with one message a second (seen against RabbitMQ 3.10 with
aiormq 7.2 and pamqp 4.0; neither library has a hook for this).

`install()` wraps pamqp's frame decoding (aiormq calls `pamqp.frame.unmarshal`, which calls
these two module functions by name):

- a content header whose properties cannot be read (or are over MAX_PROPERTIES bytes) becomes
  one with a single header, UNREADABLE (why), and the body size the frame gave: the message is delivered
  like any other, carries no MAC, and is refused, counted and alerted by its consumer as
  unauthenticated, or dead-lettered from an acknowledged queue;
- a Basic.Deliver, Basic.Return or Basic.GetOk whose strings are not UTF-8 is read with
  U+FFFD in their place: a routing key no MAC matches.

Anything else pamqp refuses is the broker's own doing, and closes the connection as before.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

from pamqp import commands, exceptions, frame, header

UNREADABLE: Final = "x-shadowline-unreadable"
# A message's properties (its headers table among them) beyond this are not read at all: pamqp
# re-slices the rest of a table for every field, so a crafted 120 KB table of booleans cost a
# second of CPU; shadowline's own messages carry a few hundred bytes of properties.
MAX_PROPERTIES: Final = 16 * 1024
# The fields of the methods whose strings a publisher writes (its routing key), in order:
# s short string, q 64-bit integer, l 32-bit integer, h 16-bit integer, b bit (one octet).
_LAYOUTS: Final = {
    commands.Basic.Deliver.index: "sqbss",
    commands.Basic.Return.index: "hsss",
    commands.Basic.GetOk.index: "qbssl",
}
_SIZES: Final = {"q": 8, "l": 4, "h": 2, "b": 1}
_installed: list[Callable[..., Any]] = []


def _readable_strings(layout: str, arguments: bytes) -> bytes:
    """`arguments` with every short string decoded with U+FFFD for what is not UTF-8."""
    out, at = bytearray(), 0
    for field in layout:
        if field == "s":
            size = arguments[at]
            text = arguments[at + 1 : at + 1 + size].decode("utf-8", "replace").encode()
            text = text[:255].decode("utf-8", "ignore").encode()  # cut on a whole character
            out += bytes([len(text)]) + text
            at += 1 + size
        else:
            out += arguments[at : at + _SIZES[field]]
            at += _SIZES[field]
    return bytes(out + arguments[at:])


def _tolerant_method(original: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def unmarshal_method(frame_data: bytes) -> Any:
        try:
            return original(frame_data)
        except exceptions.UnmarshalingException:
            layout = _LAYOUTS.get(struct.unpack_from(">I", frame_data)[0])
            if layout is None:
                raise
            return original(frame_data[:4] + _readable_strings(layout, frame_data[4:]))

    return unmarshal_method


def _marked(frame_data: bytes, why: str) -> header.ContentHeader:
    class_id, weight, body_size = struct.unpack_from(">HHQ", frame_data)
    found = header.ContentHeader(
        weight, body_size, commands.Basic.Properties(headers={UNREADABLE: why})
    )
    found.class_id = class_id
    return found


def _tolerant_header(original: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def unmarshal_header(frame_data: bytes) -> Any:
        if len(frame_data) < 14:
            return original(frame_data)  # too short for its sizes: the broker's doing
        if len(frame_data) > MAX_PROPERTIES:  # pamqp's table decoding is quadratic in size
            return _marked(frame_data, f"properties over {MAX_PROPERTIES} bytes, not read")
        try:
            return original(frame_data)
        except Exception as error:  # pamqp's refusals, and RecursionError of nested tables
            return _marked(frame_data, f"{type(error).__name__}: {error}"[:200])

    return unmarshal_header


def install() -> None:
    """Make pamqp's frame decoding tolerant of what a publisher wrote (once per process)."""
    if _installed:
        return
    _installed.append(frame._unmarshal_method_frame)
    frame._unmarshal_method_frame = _tolerant_method(frame._unmarshal_method_frame)  # type: ignore[assignment]
    frame._unmarshal_header_frame = _tolerant_header(frame._unmarshal_header_frame)  # type: ignore[assignment]
