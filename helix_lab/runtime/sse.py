"""Server-sent events: encode chunks on the server, decode them in clients.

Each chunk is one event whose ``id`` is its sequence, so a client reconnects with the
last id it saw. A clean end of stream is an explicit ``end`` event; a stream that stops
without one was dropped, and the client reconnects.

A client may ask for batched framing (``GET /sse?batch=1``; our own client does): each
event then carries a run of consecutive chunks, ``event: chunks`` with a JSON array as its
data and the last chunk's sequence as its ``id``. The chunks, their order and the
reconnect rule are the same; only the framing differs, so a reader decodes one JSON array
per page instead of scanning and decoding each chunk's event. Without the parameter every
client gets the seed's one event per chunk.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["BATCH_EVENT", "CHUNK_EVENT", "END_EVENT", "SSEDecoder", "encode_batch",
           "encode_chunk", "encode_chunks", "encode_end", "iter_sse_batches",
           "iter_sse_chunks"]

END_EVENT = "end"
BATCH_EVENT = "chunks"
"""The batched framing's event: its data is a JSON array of chunks, in sequence order."""
CHUNK_EVENT = "id: %d\nevent: chunk\ndata: %s\n\n"
"""One chunk's event, as a printf format of (sequence, JSON): Python's ``%`` and SQLite's
``printf`` read it alike, so a page of stored chunks is framed by SQLite itself."""
_FRAME = re.compile(r"(?:id: [^\n]*\n)?event: ([^\n]*)\ndata: ([^\n]*)\n\n")
"""One event as this module encodes it."""
HEARTBEAT = b": ping\n\n"


def encode_chunk(chunk: dict[str, Any]) -> bytes:
    """One SSE event; a stored chunk brings its own JSON (``Chunk.to_json``)."""
    to_json = getattr(chunk, "to_json", None)
    data = to_json() if to_json is not None else json.dumps(chunk)
    return (CHUNK_EVENT % (chunk["sequence"], data)).encode()


def encode_chunks(chunks: list[Any]) -> bytes:
    """Several events at once (a page or a live batch), encoded in one go."""
    return "".join([CHUNK_EVENT % (c["sequence"], c.to_json()) for c in chunks]).encode()


def encode_batch(last: int, joined: str) -> bytes:
    """One batched event: ``joined`` is the chunks' JSON separated by commas (the inside
    of the array), ``last`` the sequence of the last of them."""
    return f"id: {last}\nevent: {BATCH_EVENT}\ndata: [{joined}]\n\n".encode()


def encode_end(reason: str = "idle") -> bytes:
    return f"event: {END_EVENT}\ndata: {json.dumps({'reason': reason})}\n\n".encode()


class SSEDecoder:
    """Incremental decoder: feed text, get ``(event, data)`` pairs for complete events."""

    def __init__(self) -> None:
        self._pieces: list[str] = []
        """The reads of an event still incomplete, as they came."""
        self._tail = ""
        """Their last two characters: a boundary may straddle two reads."""

    def feed(self, text: str) -> list[tuple[str, str]]:
        # Only whole events are parsed; the last one, if incomplete, waits as it came, and
        # every feed starts at an event boundary. Only the new text (and the tail before
        # it) can hold a new boundary, so an event that takes many reads (a batch of a
        # few hundred kilobytes) is searched and joined once, not once per read.
        if "\n" not in text:  # no boundary ends in it: the common read inside a batch
            if text:
                self._pieces.append(text)
                self._tail = text[-2:] if len(text) > 1 else (self._tail + text)[-2:]
            return []
        probe = self._tail + text
        lf, crlf = probe.rfind("\n\n"), probe.rfind("\n\r\n")
        if lf < 0 and crlf < 0:
            self._pieces.append(text)
            self._tail = probe[-2:]
            return []
        cut = max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0) - len(self._tail)
        self._pieces.append(text[:cut])
        complete = "".join(self._pieces)
        rest = text[cut:]
        self._pieces = [rest] if rest else []
        self._tail = rest[-2:]
        end = len(complete)
        events: list[tuple[str, str]] = []
        pos = 0
        # The server's own framing (an id, an event and one data line) is matched by one
        # regex scan instead of a Python loop over its lines.
        for match in _FRAME.finditer(complete):
            if match.start() != pos:
                break
            events.append((match.group(1), match.group(2)))
            pos = match.end()
        if pos == end:
            return events
        # Anything else, line by line. Split once: slicing the rest after every line made
        # a large read quadratic in its size.
        event, data = "message", []
        for line in complete[pos:].split("\n"):
            if line.endswith("\r"):
                line = line[:-1]
            if not line:
                if data:
                    events.append((event, "\n".join(data)))
                event, data = "message", []
            elif line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
            elif line.startswith("event:"):
                event = line[7:] if line.startswith("event: ") else line[6:]
            # comments (":"), "id:" and "retry:" lines carry nothing a client needs here
        return events


async def iter_sse_batches(lines: AsyncIterator[bytes], loads: Callable[[str], Any] = json.loads
                           ) -> AsyncIterator[list[tuple[str, Any]]]:
    """Decode a byte stream into lists of ``(event, data)``, the data decoded from JSON:
    one list per read, with one ``loads`` for all of a read's events. A faster ``loads``
    (the client's msgspec) may refuse what ``json.loads`` takes (NaN, Infinity, a lone
    surrogate): the read is then decoded again with ``json.loads``, so what is decoded
    is the same either way."""
    decoder = SSEDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()  # a character may span two reads
    async for piece in lines:
        text = utf8.decode(piece) if isinstance(piece, bytes) else piece
        events = decoder.feed(text)
        if not events:
            continue
        try:
            values = loads("[" + ",".join([data for _, data in events]) + "]")
        except ValueError:
            values = [json.loads(data) for _, data in events]  # raises for the bad one
        yield [(event, value) for (event, _), value in zip(events, values, strict=True)]


async def iter_sse_chunks(lines: AsyncIterator[bytes]) -> AsyncIterator[tuple[str, Any]]:
    """Decode a byte stream into ``("chunk", dict)`` and ``("end", dict)`` items, in either
    framing: a batched event gives one ``("chunk", dict)`` per chunk in it."""
    async for batch in iter_sse_batches(lines):
        for event, data in batch:
            if event == BATCH_EVENT:
                for chunk in data:
                    yield "chunk", chunk
            else:
                yield event, data
