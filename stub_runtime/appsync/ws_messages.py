"""Whole WebSocket messages from websockets' sans-I/O frames: a message sent in fragments (a TEXT or
BINARY frame, then CONT frames until one has `fin`) comes out as one frame. websockets' sans-I/O
protocol checks the fragments' order but hands them over one by one; its asyncio and threading
implementations join them, and so must every user of the protocol itself: the stub's blocking
connection, the dev server's asyncio one, and the emulator's realtime server."""

from __future__ import annotations

from websockets.frames import Frame, Opcode

DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


class MessageAssembler:
    """Feed it each data frame (TEXT, BINARY, CONT) in order; it returns the whole message once its
    last fragment came, else None. A message in one frame is returned as it is: no copy."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[Frame] = []

    def feed(self, frame: Frame) -> Frame | None:
        parts = self._parts
        if not parts:
            if frame.fin:
                return frame  # the common case
            parts.append(frame)
            return None
        parts.append(frame)
        if not frame.fin:
            return None
        self._parts = []
        return Frame(parts[0].opcode, b"".join(p.data for p in parts))


def text_of(message: Frame) -> str | None:
    """A whole message's text; None for a binary message or one that is not UTF-8."""
    if message.opcode is not Opcode.TEXT:
        return None
    data = message.data
    try:  # websockets' parser gives bytes; the type allows any buffer
        return data.decode() if isinstance(data, bytes) else str(data, "utf-8")
    except UnicodeDecodeError:
        return None
