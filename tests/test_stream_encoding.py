"""A chunk is JSON-encoded once, when it is written; its wire form splices the stamp in
front of that stored JSON. Whatever the fields, the spliced text must decode to the chunk."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from helix_lab.runtime.sql import SqliteStorage
from helix_lab.runtime.sse import SSEDecoder, encode_chunk, encode_chunks, encode_end
from helix_lab.runtime.stream import DOStreamManager

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8)
fields = st.dictionaries(
    st.text().filter(lambda k: k not in {"type", "sequence", "agentId", "agentType", "step",
                                         "timestamp", "runId"}),
    json_values, max_size=4)


@settings(max_examples=200, deadline=None)
@given(kind=st.text(min_size=1), extra=fields, session=st.text(), run=st.none() | st.text(),
       step=st.integers(min_value=0, max_value=10**6))
def test_the_spliced_wire_form_decodes_to_the_chunk(kind: str, extra: dict[str, Any],
                                                    session: str, run: str | None,
                                                    step: int) -> None:
    manager = DOStreamManager(SqliteStorage(":memory:"))
    manager.agent_id, manager.agent_type = session, "agent"
    written = manager.write({"type": kind, **extra}, run_id=run, step=step)
    manager.flush()
    (stored,) = manager.read(0, 10)
    assert stored == written
    (wired,) = manager.read_wire(0, 10)  # the wire form SQLite builds for replays
    assert wired["sequence"] == written["sequence"]
    for chunk in (written, stored, wired):
        assert json.loads(chunk.to_json()) == dict(written)
        assert chunk.to_json() is chunk.to_json()  # built once for every client
        ((event, data),) = SSEDecoder().feed(encode_chunk(chunk).decode())
        assert event == "chunk" and json.loads(data) == dict(written)


@settings(max_examples=200, deadline=None)
@given(extra=fields)
def test_the_stored_body_is_exactly_json_dumps_of_the_fields(extra: dict[str, Any]) -> None:
    # The writer has a fast path for string and integer fields; it must not change a byte.
    manager = DOStreamManager(SqliteStorage(":memory:"))
    written = manager.write({"type": "custom", **extra})
    assert written.body == json.dumps(extra)
    manager.flush()
    row = manager.sql.exec("SELECT body FROM helix_chunks")[0]
    assert row["body"] == json.dumps(extra)


class Socket:
    """A WebSocket that records what it is sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, text: str) -> None:
        self.sent.append(text)

    def close(self, code: int = 1000, reason: str = "") -> None:
        pass


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["text_delta", "thinking"]), delta=st.text(),
       run=st.none() | st.text(), step=st.integers(min_value=0, max_value=10**6),
       listening=st.booleans())
def test_a_streamed_delta_is_the_chunk_write_would_make(kind: str, delta: str, run: str | None,
                                                         step: int, listening: bool) -> None:
    made = []
    for fast in (False, True):
        manager = DOStreamManager(SqliteStorage(":memory:"))
        manager.agent_id, manager.agent_type = "s", "agent"
        socket = Socket()
        if listening:
            manager.attach_socket(socket)
        if fast:
            manager.write_delta(kind, delta, run_id=run, step=step)
        else:
            manager.write({"type": kind, "delta": delta}, run_id=run, step=step)
        manager.flush()
        (stored,) = manager.read(0, 10)
        row = manager.sql.exec("SELECT body FROM helix_chunks")[0]
        sent = [json.loads(text) for text in socket.sent]
        assert len(sent) == (1 if listening else 0)
        for chunk in (stored, *sent):
            chunk.pop("timestamp")
        made.append((stored, list(stored), row["body"], sent))
    assert made[0] == made[1]  # same fields, same order, same stored JSON, same live chunk


def test_a_chunk_that_is_not_json_takes_no_sequence() -> None:
    manager = DOStreamManager(SqliteStorage(":memory:"))
    manager.write({"type": "custom", "data": 1})
    try:
        manager.write({"type": "custom", "data": object()})
    except TypeError:
        pass
    else:
        raise AssertionError("a chunk with an object() in it was accepted")
    manager.write({"type": "custom", "data": 3})
    manager.flush()
    assert [c["sequence"] for c in manager.read(0, 10)] == [1, 2]
    assert [c["data"] for c in manager.read(0, 10)] == [1, 3]


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_the_sse_decoder_reads_any_split_of_a_stream(cuts: list[int]) -> None:
    text = ("retry: 10\r\n: a comment\r\nid: 1\r\nevent: chunk\r\ndata: {\"a\": 1}\r\n\r\n"
            "data:two\ndata: lines\n\n"
            "event:end\ndata: {}\n\n")
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    decoder = SSEDecoder()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    assert events == [("chunk", '{"a": 1}'), ("message", "two\nlines"), ("end", "{}")]


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_the_servers_own_framing_decodes_the_same_whatever_the_reads(cuts: list[int]) -> None:
    # The decoder matches this server's framing with a regex; a heartbeat, a comment or
    # another server's framing in between must not throw it off, however reads split it.
    manager = DOStreamManager(SqliteStorage(":memory:"))
    for i in range(4):
        manager.write({"type": "text_delta", "delta": f"é{i}\n\"x\""})
    manager.flush()
    page = manager.read(0, 10)
    text = (encode_chunks(page[:2]).decode() + ": ping\n\n" + encode_chunks(page[2:3]).decode()
            + "data: plain\r\n\r\n" + encode_chunks(page[3:]).decode() + encode_end().decode())
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    decoder = SSEDecoder()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    assert [e for e, _ in events] == ["chunk", "chunk", "chunk", "message", "chunk", "end"]
    chunks = [json.loads(d) for e, d in events if e == "chunk"]
    assert chunks == [dict(c) for c in page]
