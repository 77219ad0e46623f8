"""A chunk is JSON-encoded once, when it is written; its wire form splices the stamp in
front of that stored JSON. Whatever the fields, the spliced text must decode to the chunk.
SQLite builds the same text for pages of stored chunks (both SSE framings), and an SSE
tail reads those pages in order, once each, live or not."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helix_lab.runtime.sql import SqliteStorage
from helix_lab.runtime.sse import (
    SSEDecoder,
    encode_batch,
    encode_chunk,
    encode_chunks,
    encode_end,
)
from helix_lab.runtime.stream import PAGE, DOStreamManager
from helix_lab.worker_bundle.do_sql import DOSqlStorage
from helix_lab.worker_bundle.standin.storage import DurableObjectStorage

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


def _escapes_alike(text: str) -> bool:
    """Python's JSON and SQLite's json_quote write this text byte for byte the same.

    They differ on non-ASCII (Python escapes it) and on DEL and other unprintables
    (Python writes ``\\u007f``, SQLite the raw byte): equal values, different bytes.
    """
    return text.isascii() and text.isprintable()


@settings(max_examples=200, deadline=None)
@given(kind=st.text(min_size=1), extra=fields, session=st.text(), run=st.none() | st.text(),
       step=st.integers(min_value=0, max_value=10**6))
def test_a_page_sqlite_frames_is_the_python_framing(
        kind: str, extra: dict[str, Any], session: str, run: str | None, step: int) -> None:
    manager = DOStreamManager(SqliteStorage(":memory:"))
    manager.agent_id, manager.agent_type = session, "agent"
    written = [manager.write({"type": kind, **extra}, run_id=run, step=step),
               manager.write({"type": "text_delta", "delta": "x"}, step=step)]
    manager.flush()
    # SQLite's json_quote leaves non-ASCII text as it is where Python escapes it: the
    # same JSON values, so compare them decoded, and the framing around them exactly.
    events = manager.read_text(0, 10, events=True)
    assert (events.count, events.last) == (2, 2)
    framed = [(e, json.loads(d)) for e, d in SSEDecoder().feed(events.text)]
    assert framed == [(e, json.loads(d)) for e, d in
                      SSEDecoder().feed(encode_chunks(written).decode())]
    assert [value for _, value in framed] == [dict(c) for c in written]
    assert events.text.startswith("id: 1\nevent: chunk\ndata: {")
    assert "\n\nid: 2\nevent: chunk\ndata: {" in events.text
    array = manager.read_text(0, 10, events=False)
    assert (array.count, array.last) == (2, 2)
    assert json.loads("[" + array.text + "]") == [dict(c) for c in written]
    if _escapes_alike(kind) and (run is None or _escapes_alike(run)):
        assert array.text == ",".join(c.to_json() for c in written)
    assert manager.read_text(2, 10, events=False) == (0, 0, "")
    # What a tail sends from a commit's rows, formatted in Python: the same, byte for byte
    # where Python's JSON escapes nothing SQLite's leaves as it is.
    rows = [tuple(r.values()) for r in manager.sql.exec(
        "SELECT sequence, run_id, step, timestamp, type, body FROM helix_chunks")]
    for text_events in (False, True):
        sql_text = manager.read_text(0, 10, events=text_events)
        py_text = manager.text_of(rows, events=text_events)
        assert (py_text.count, py_text.last) == (2, 2)
        if _escapes_alike(kind) and (run is None or _escapes_alike(run)):
            assert py_text == sql_text
    assert json.loads("[" + manager.text_of(rows, events=False).text + "]") == [
        dict(c) for c in written]


def _stored(manager: DOStreamManager, count: int) -> list[dict[str, Any]]:
    manager.agent_id, manager.agent_type = "s", "agent"
    for i in range(count):
        manager.write_delta("text_delta", f"w{i} é\n", run_id="r", step=1 + i // 1000)
    manager.flush()
    return [dict(c) for c in manager.read(0, count + 1)]


async def _pages(tail: Any) -> list[tuple[int, int, str]]:
    return [tuple(page) async for page in tail]


async def _check_tails(manager: DOStreamManager, stored: list[dict[str, Any]],
                       start: int) -> None:
    """A tail from ``start`` reads full pages, then the rest, in both framings."""
    pages = await _pages(manager.tail(start, events=False))
    left = len(stored) - start
    assert [count for count, _, _ in pages] == [min(PAGE, left - i) for i in
                                                range(0, left, PAGE)]
    chunks = []
    for count, last, text in pages:
        array = json.loads(encode_batch(last, text).decode().split("data: ", 1)[1])
        assert len(array) == count and array[-1]["sequence"] == last
        chunks.extend(array)
    assert chunks == stored[start:]
    framed = b"".join(page[2].encode() for page in
                      await _pages(manager.tail(start, events=True)))
    events = SSEDecoder().feed(framed.decode())
    assert [json.loads(data) for _, data in events] == stored[start:]
    assert manager._tails == set()  # a tail that ended is forgotten


async def test_a_tail_reads_every_page_in_order_in_both_framings() -> None:
    manager = DOStreamManager(SqliteStorage(":memory:"))
    stored = _stored(manager, PAGE * 2 + 345)
    for start in (0, 1, PAGE - 1, PAGE, PAGE + 17, len(stored)):
        await _check_tails(manager, stored, start)


@pytest.mark.parametrize("events", [False, True])
async def test_a_following_tail_gets_each_commit_once_and_in_order(events: bool) -> None:
    # Commits that follow on are sent from the rows they stored; a backlog beyond a page,
    # a tail that joins late, and rows a rolled-back transaction took back send the tail
    # to storage instead. Either way: every stored chunk once, in order, nothing else.
    manager = DOStreamManager(SqliteStorage(":memory:"))
    manager.agent_id, manager.agent_type = "s", "agent"
    live = True
    manager.is_live = lambda: live
    got: dict[int, list[dict[str, Any]]] = {0: [], 1: []}

    async def read(key: int) -> None:
        async for page in manager.tail(0, follow=True, events=events):
            if events:
                got[key].extend(json.loads(d) for _, d in SSEDecoder().feed(page.text))
            else:
                got[key].extend(json.loads("[" + page.text + "]"))
            if page.last == manager.sequence and not live:
                return
            await asyncio.sleep(0)  # as a socket write would: commits land in between

    readers = [asyncio.ensure_future(read(0))]
    for burst in range(40):
        if burst == 31:  # a tail that starts late, pages behind, while commits go on
            readers.append(asyncio.ensure_future(read(1)))
        size = PAGE + 300 if burst == 30 else burst * 7  # one backlog beyond a page
        for i in range(size):
            manager.write_delta("text_delta", f"{burst}.{i}", run_id=None, step=burst)
        manager.write({"type": "step_started"}, step=burst)
        manager.flush()
        if burst == 25:
            def rolled_back() -> None:
                manager.write({"type": "taken_back"}, step=25)
                manager.flush()  # stored and offered inside the outer transaction...
                raise RuntimeError("...which then fails")

            with pytest.raises(RuntimeError):
                manager.sql.transaction(rolled_back)
            manager.discard_pending()
        if burst % 3:
            await asyncio.sleep(0)  # sometimes the readers run between two commits
    live = False
    manager.write({"type": "run_completed"})
    manager.flush()
    await asyncio.wait_for(asyncio.gather(*readers), 60)
    stored = [dict(c) for c in manager.read(0, 100_000)]
    assert "taken_back" not in {c["type"] for c in stored}
    assert got[0] == got[1] == stored
    assert len(stored) > 2 * PAGE


async def test_a_tail_on_the_durable_object_binding_reads_the_same_pages(tmp_path: Any) -> None:
    # helix serve's binding: the stand-in's ctx.storage through DOSqlStorage.
    storage = DurableObjectStorage(str(tmp_path / "object.sqlite3"))
    try:
        manager = DOStreamManager(DOSqlStorage(storage))
        stored = _stored(manager, PAGE + 10)
        for start in (0, 3, PAGE):
            await _check_tails(manager, stored, start)
    finally:
        storage.close()
