"""Server-sent events: encode chunks on the server, decode them in clients.

Each chunk is one event whose ``id`` is its sequence, so a client reconnects with the
last id it saw. A clean end of stream is an explicit ``end`` event; a stream that stops
without one was dropped, and the client reconnects.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["END_EVENT", "SSEDecoder", "encode_chunk", "encode_end", "iter_sse_chunks"]

END_EVENT = "end"
HEARTBEAT = b": ping\n\n"


def encode_chunk(chunk: dict[str, Any]) -> bytes:
    """One SSE event; a stored chunk brings its own JSON (``Chunk.to_json``)."""
    to_json = getattr(chunk, "to_json", None)
    data = to_json() if to_json is not None else json.dumps(chunk)
    return f"id: {chunk['sequence']}\nevent: chunk\ndata: {data}\n\n".encode()


def encode_end(reason: str = "idle") -> bytes:
    return f"event: {END_EVENT}\ndata: {json.dumps({'reason': reason})}\n\n".encode()


class SSEDecoder:
    """Incremental decoder: feed text, get ``(event, data)`` pairs for complete events."""

    def __init__(self) -> None:
        self._buffer = ""
        self._event = "message"
        self._data: list[str] = []

    def feed(self, text: str) -> list[tuple[str, str]]:
        # Split once per feed: slicing the rest of the buffer after every line made a
        # large read (a replayed page of thousands of chunks) quadratic in its size.
        lines = (self._buffer + text).split("\n")
        self._buffer = lines.pop()  # the incomplete last line, if any
        events: list[tuple[str, str]] = []
        event, data = self._event, self._data
        for line in lines:
            if line.endswith("\r"):
                line = line[:-1]
            if not line:
                if data:
                    events.append((event, "\n".join(data)))
                event, data = "message", []
            elif line.startswith("data:"):  # the common line first
                data.append(line[6:] if line.startswith("data: ") else line[5:])
            elif line.startswith("event:"):
                event = line[7:] if line.startswith("event: ") else line[6:]
            # comments (":"), "id:" and "retry:" lines carry nothing a client needs here
        self._event, self._data = event, data
        return events


async def iter_sse_chunks(lines: AsyncIterator[bytes]) -> AsyncIterator[tuple[str, Any]]:
    """Decode a byte stream into ``("chunk", dict)`` and ``("end", dict)`` items."""
    decoder = SSEDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()  # a character may span two reads
    async for piece in lines:
        text = utf8.decode(piece) if isinstance(piece, bytes) else piece
        for event, data in decoder.feed(text):
            yield event, json.loads(data)
