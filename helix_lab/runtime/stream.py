"""``DOStreamManager``: numbered chunks, stored, then fanned out to SSE and WebSocket clients.

Three rules keep every client's view exact:

1. Sequences start at 1 per session and never repeat or skip.
2. A chunk is broadcast only after it is stored. Writes are batched: chunks written in
   the same event-loop turn (or up to :data:`MAX_BATCH`) go to SQLite in one transaction,
   the way a Durable Object coalesces writes behind its output gate. A client therefore
   never sees a chunk that a crash could take back.
3. A subscriber registers for live chunks *before* it replays the stored ones, then
   drops anything at or below the last sequence it sent. Replay and live traffic meet
   with no gap and no duplicate, and a subscriber that falls behind is not dropped: it
   goes back to replaying from storage.

An SSE client needs no chunk objects at all, only their wire text: it follows the stream
as a :class:`Tail`, which reads pages from storage as text SQLite builds (one row per page,
:meth:`DOStreamManager.read_text`). A commit hands it the rows it stored; when they follow
on from what the tail sent, the tail formats them in Python instead of reading them back
(:meth:`DOStreamManager.text_of`), and otherwise it reads storage. Either way it sends
only committed rows, after the last sequence it sent: rules 2 and 3 hold.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from json.encoder import encode_basestring_ascii as _escape
from typing import Any, Literal, NamedTuple

from .http import WebSocketLike
from .search import SearchIndex
from .sql import SqlStorage, insert_rows
from .sse import CHUNK_EVENT

__all__ = ["MAX_BATCH", "Chunk", "DOStreamManager", "StoredText", "StreamStatus",
           "Subscription", "Tail", "client_chunks", "detached"]

StreamStatus = Literal["active", "paused", "ended", "failed"]
MAX_BATCH = 1024
PAGE = 2000
MAX_BUFFER = 50_000
"""Live chunks a subscriber may hold before it falls back to replaying from storage."""

_SCHEMA = """CREATE TABLE IF NOT EXISTS helix_chunks (
    sequence INTEGER PRIMARY KEY, run_id TEXT, step INTEGER, timestamp INTEGER,
    type TEXT NOT NULL, body TEXT NOT NULL)"""
_BASE_KEYS = frozenset({"type", "sequence", "agentId", "agentType", "step", "timestamp", "runId"})


_INSERT = "INSERT INTO helix_chunks VALUES (?, ?, ?, ?, ?, ?)"
_WIRE = '{"type": %s, "sequence": %d, %s, "step": %s, "timestamp": %s%s%s'
"""A chunk's wire JSON as a printf format: :meth:`Chunk.to_json` fills it with Python's
``%``, and the page queries below with SQLite's ``printf``, so the two have one shape
(SQLite's ``json_quote`` leaves non-ASCII text unescaped: the same JSON values). The
third field is the session's two names at once (:func:`_names`): one argument less for
SQLite to format per row."""
_WIRE_ARGS = """json_quote(type), sequence, ?1, coalesce(step, 'null'),
    coalesce(timestamp, 'null'),
    CASE WHEN run_id IS NULL THEN '' ELSE ', "runId": ' || json_quote(run_id) END,
    CASE WHEN body = '{}' THEN '}' ELSE ', ' || substr(body, 2) END"""
_WIRE_PAGE = f"""SELECT sequence, printf('{_WIRE}', {_WIRE_ARGS}) AS wire
    FROM helix_chunks WHERE sequence > ?2 ORDER BY sequence LIMIT ?3"""
"""A page of chunks in their wire form (as :meth:`Chunk.to_json` makes it), built by SQLite."""
_TEXT_PAGE = """SELECT count(*) AS count, max(sequence) AS last, group_concat(item, ?4) AS text
    FROM (SELECT sequence, printf('{format}', {args}) AS item FROM helix_chunks
          WHERE sequence > ?2 ORDER BY sequence LIMIT ?3)"""
# The aggregate sees the rows in the subquery's order: a subquery with a LIMIT is never
# flattened into an aggregate query, so SQLite runs it first, in ORDER BY order.
_EVENTS_PAGE = _TEXT_PAGE.format(format=CHUNK_EVENT.replace("%s", _WIRE),
                                 args="sequence, " + _WIRE_ARGS)
"""A page as the SSE events of its chunks, one after another (:data:`~.sse.CHUNK_EVENT`)."""
_JSON_PAGE = _TEXT_PAGE.format(format=_WIRE, args=_WIRE_ARGS)
"""A page as its chunks' JSON separated by commas: the inside of a JSON array."""


class StoredText(NamedTuple):
    """Stored chunks as one text: read by SQLite (:meth:`DOStreamManager.read_text`), or
    formatted from the rows a commit stored (:meth:`DOStreamManager.text_of`)."""

    count: int
    last: int
    """The sequence of the last chunk in it (0 when it is empty)."""
    text: str


@functools.lru_cache(maxsize=4096)
def _quoted(text: str) -> str:
    return json.dumps(text)


@functools.lru_cache(maxsize=256)
def _run_field(run_id: str | None) -> str:
    """The ``runId`` field of a chunk's wire JSON, with its comma (none without a run)."""
    return "" if run_id is None else ', "runId": ' + _quoted(run_id)


@functools.lru_cache(maxsize=256)
def _names(agent_id: str, agent_type: str) -> str:
    """The ``agentId`` and ``agentType`` fields of a chunk's wire JSON, together."""
    return f'"agentId": {_quoted(agent_id)}, "agentType": {_quoted(agent_type)}'


def _encode_fields(fields: dict[str, Any]) -> str:
    """``json.dumps(fields)``, byte for byte, with a fast path for the common chunk: a few
    string and integer fields (a text delta is one). Anything else goes to ``json.dumps``."""
    parts = []
    for key, value in fields.items():
        kind = type(value)
        if type(key) is not str:
            return json.dumps(fields)
        if kind is str:
            parts.append(f"{_quoted(key)}: {_escape(value)}")
        elif kind is int:
            parts.append(f"{_quoted(key)}: {int.__repr__(value)}")
        else:
            return json.dumps(fields)
    return "{" + ", ".join(parts) + "}"


class Chunk(dict[str, Any]):
    """A numbered chunk that keeps the JSON of its own fields (``body``, as stored).

    Its wire form (:meth:`to_json`) splices the stamp in front of that JSON instead of
    encoding the whole chunk again: one encode per chunk, however many clients read it.
    """

    __slots__ = ("_wire", "body")

    def to_json(self) -> str:
        """The whole chunk as JSON; built once, then shared by every client's frame."""
        try:
            return self._wire
        except AttributeError:
            pass
        self._wire = _WIRE % (
            _quoted(self["type"]), self["sequence"], _names(self["agentId"], self["agentType"]),
            self["step"], self["timestamp"],
            ', "runId": ' + _quoted(self["runId"]) if "runId" in self else "",
            "}" if self.body == "{}" else ", " + self.body[1:])
        return self._wire


_SCALARS = frozenset({str, int, float, bool, type(None)})


def detached(chunk: Chunk) -> dict[str, Any]:
    """A chunk of the caller's own: the stream's chunk objects are shared with the runtime
    and every other subscriber. Fields that are all scalars copy shallowly; a chunk with a
    nested value is rebuilt from its JSON, as a client over HTTP would get it."""
    body = chunk.body  # the fields' JSON: without a bracket after its first, nothing nests
    if "[" in body or body.find("{", 1) != -1:
        for value in chunk.values():
            if type(value) not in _SCALARS:
                return json.loads(chunk.to_json())
    return dict(chunk)


class Subscription:
    """One client's ordered view of the stream, from a sequence onwards."""

    def __init__(self, manager: DOStreamManager, from_sequence: int, *, follow: bool) -> None:
        self._manager = manager
        self.last = from_sequence
        self.follow = follow
        self._buffer: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._lagging = True  # start by replaying from storage
        self.closed = False

    def _push(self, chunks: list[dict[str, Any]]) -> None:
        if self._lagging:
            self._wake.set()
            return
        if len(self._buffer) + len(chunks) > MAX_BUFFER:
            self._buffer.clear()
            self._lagging = True
        else:
            self._buffer.extend(chunks)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def __aiter__(self) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield batches of chunks in sequence order: stored pages first, then live ones."""
        manager = self._manager
        try:
            while not self.closed:
                if self._lagging:
                    # Clearing the flag before reading means chunks flushed while we yield
                    # land in the buffer, and the dedupe below trims the overlap.
                    self._lagging = False
                    self._buffer.clear()
                    page = manager.read(self.last, PAGE)
                    if len(page) == PAGE:
                        self._lagging = True
                    if page:
                        self.last = page[-1]["sequence"]
                        yield page
                    continue
                batch: list[dict[str, Any]] = []
                while self._buffer:
                    chunk = self._buffer.popleft()
                    if chunk["sequence"] <= self.last:
                        continue
                    if chunk["sequence"] != self.last + 1:  # a gap: storage has the truth
                        self._lagging = True
                        break
                    self.last = chunk["sequence"]
                    batch.append(chunk)
                if batch:
                    yield batch
                if self._lagging or self._buffer:
                    continue
                if not self.follow and not manager.is_live():
                    return
                self._wake.clear()
                await self._wake.wait()
        finally:
            manager._subscribers.discard(self)


async def client_chunks(
        subscribe: Callable[[], Awaitable[Subscription | None]]) -> AsyncIterator[dict[str, Any]]:
    """What an in-process client yields from the subscription ``subscribe()`` opens (none:
    nothing): the chunks one by one, each the caller's own copy (:func:`detached`), none
    at or below a sequence already yielded (the one dedupe, at the client). Closing it
    closes the subscription. A client returns this generator as its own stream, so a
    chunk passes through no other generator on its way to the caller."""
    subscription = await subscribe()
    if subscription is None:
        return
    batches = subscription.__aiter__()
    last = subscription.last
    try:
        async for batch in batches:
            for chunk in batch:
                if chunk["sequence"] <= last:
                    continue
                last = chunk["sequence"]
                yield detached(chunk)
    finally:
        subscription.close()
        await batches.aclose()


class Tail:
    """One SSE client's view of the stream: pages of wire text.

    It holds no chunk objects. Stored pages come from SQLite as text
    (:meth:`DOStreamManager.read_text`); a commit hands the tail the rows it stored, and
    those that follow on from what it sent become its next page without a read. ``events``
    chooses the text: the chunks' SSE events, or their JSON joined by commas (for one
    batched event)."""

    def __init__(self, manager: DOStreamManager, from_sequence: int, *, follow: bool,
                 events: bool) -> None:
        self._manager = manager
        self.last = from_sequence
        self.follow = follow
        self.events = events
        self._wake = asyncio.Event()
        self._fresh: list[tuple[Any, ...]] | None = None
        """Rows committed right after ``last``, in order; ``None``: read storage instead."""
        self.closed = False

    def _offer(self, rows: list[tuple[Any, ...]]) -> None:
        """A commit stored ``rows``: keep them if they follow on (up to a page), and wake."""
        fresh = self._fresh
        if rows and fresh is not None:
            follows = (fresh[-1][0] if fresh else self.last) + 1
            if rows[0][0] == follows and len(fresh) + len(rows) <= PAGE:
                fresh.extend(rows)
            else:  # a gap, or too many: storage has them all
                self._fresh = None
        self._wake.set()

    def close(self) -> None:
        """The client went away: no commit wakes this tail any more."""
        self.closed = True
        self._wake.set()
        self._manager._tails.discard(self)

    async def __aiter__(self) -> AsyncIterator[StoredText]:
        """Yield the stored pages in order, then each commit's new chunks as they land."""
        manager = self._manager
        try:
            while not self.closed:
                # Cleared before the read: a commit during the yield below sets it again,
                # so nothing stored after this read can be missed. From here on, commits
                # that follow on are kept (a fresh list) to be sent without a read.
                self._wake.clear()
                fresh, self._fresh = self._fresh, []
                if fresh:
                    page = manager.text_of(fresh, events=self.events)
                else:
                    page = manager.read_text(self.last, PAGE, events=self.events)
                if page.count:
                    self.last = page.last
                    yield page
                    if page.count == PAGE:
                        continue
                if self._wake.is_set():
                    continue
                if not self.follow and not manager.is_live():
                    return
                await self._wake.wait()
        finally:
            manager._tails.discard(self)


class DOStreamManager:
    """Chunk numbering, batched persistence and fan-out for one session."""

    def __init__(
        self,
        sql: SqlStorage,
        *,
        is_live: Callable[[], bool] = lambda: False,
        logger: Any = None,
    ) -> None:
        self.sql = sql
        sql.exec(_SCHEMA)
        rows = sql.exec("SELECT MAX(sequence) AS s FROM helix_chunks")
        self.sequence = int(rows[0]["s"] or 0)
        self.agent_id = ""
        self.agent_type = ""
        self.is_live = is_live
        self.logger = logger
        self._pending: list[Chunk] = []
        self._rows: list[tuple[Any, ...]] = []
        """The pending chunks' rows, built as they are written (one list walk less). The
        one list for the stream's life: delta writers hold it."""
        self._flush_scheduled = False
        self._closed = False
        self._subscribers: set[Subscription] = set()
        self._tails: set[Tail] = set()
        self._committing: list[tuple[Any, ...]] = []
        """Rows stored by :meth:`take_pending` that the next :meth:`broadcast` hands to tails."""
        self._sockets: dict[WebSocketLike, int] = {}
        self.search = SearchIndex(sql)
        """The full-text index of the chunks, written with them (``GET /search``)."""
        self.search.catch_up(self.sequence)

    # -- writing --------------------------------------------------------------------------

    def write(self, chunk: dict[str, Any], *, run_id: str | None = None,
              step: int | None = None) -> Chunk:
        """Number and stamp ``chunk`` and queue it; it is stored and sent on the next flush."""
        extra = chunk.copy()
        kind = extra.pop("type")
        if not _BASE_KEYS.isdisjoint(extra):  # rare: a caller passed a stamp field along
            extra = {k: v for k, v in extra.items() if k not in _BASE_KEYS}
        body = _encode_fields(extra)  # first: a chunk that cannot be encoded takes no sequence
        self.sequence = sequence = self.sequence + 1
        if step is None:
            step = chunk.get("step", 0)
        timestamp = time.time_ns() // 1_000_000
        full = Chunk(type=kind, sequence=sequence, agentId=self.agent_id,
                     agentType=self.agent_type, step=step, timestamp=timestamp)
        full.update(extra)
        if run_id is not None:
            full["runId"] = run_id
        full.body = body  # encoded once: stored as is, spliced into SSE frames
        self.search.note(full, sequence, step)
        self._queue(full, (sequence, run_id, step, timestamp, kind, body))
        return full

    def write_delta(self, kind: str, delta: str, *, run_id: str | None, step: int) -> None:
        """``write({"type": kind, "delta": delta}, ...)``, for the chunk a model streams by
        the thousand (``text_delta``, ``thinking``); see :meth:`delta_writer`."""
        self.delta_writer(run_id, step)(kind, delta)

    def delta_writer(self, run_id: str | None, step: int) -> Callable[[str, str], None]:
        """``write_delta(kind, delta)`` bound to one model call's run and step: what the
        executor calls once per delta, the hottest path of the runtime (a closure: no
        keyword arguments to merge, no attribute lookups for what is fixed per call).

        The row is queued as ``write`` would queue it, and the delta's text handed to the
        search index; the chunk itself is built only if a client is listening (every way
        to start listening flushes first, so a chunk queued before it is read from
        storage)."""
        rows = self._rows  # emptied in place by take_pending, never replaced
        search = self.search
        time_ns = time.time_ns

        def write(kind: str, delta: str) -> None:
            body = f'{{"delta": {_escape(delta)}}}'
            self.sequence = sequence = self.sequence + 1
            timestamp = time_ns() // 1_000_000
            if self._subscribers or self._sockets:
                full = Chunk(type=kind, sequence=sequence, agentId=self.agent_id,
                             agentType=self.agent_type, step=step, timestamp=timestamp,
                             delta=delta)
                if run_id is not None:
                    full["runId"] = run_id
                full.body = body
                self._pending.append(full)
            texts = search.texts  # SearchIndex.note_text, inlined
            if texts is not None:
                group = texts.get((step, kind))
                if group is None:
                    texts[(step, kind)] = [sequence, sequence, [delta]]
                else:
                    group[1] = sequence
                    group[2].append(delta)
            rows.append((sequence, run_id, step, timestamp, kind, body))
            if len(rows) >= MAX_BATCH:
                self.flush()
            elif not self._flush_scheduled:
                self._schedule_flush()

        return write

    def _schedule_flush(self) -> None:
        self._flush_scheduled = True
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no loop (a sync caller): store at once
            self.flush()

    def _queue(self, chunk: Chunk, row: tuple[Any, ...]) -> None:
        self._pending.append(chunk)
        self._rows.append(row)
        if len(self._rows) >= MAX_BATCH:
            self.flush()
        elif not self._flush_scheduled:
            self._schedule_flush()

    def take_pending(self) -> list[Chunk]:
        """Store the queued chunks (inside the caller's transaction) and return them (those
        a client may need: deltas queued while nobody listened are only stored)."""
        chunks, self._pending = self._pending, []
        rows = self._rows.copy()
        self._rows.clear()
        if rows:
            insert_rows(self.sql, _INSERT, rows)
            self.search.stored()
            if self._tails:
                self._committing.extend(rows)
        return chunks

    def flush(self) -> None:
        """Store every queued chunk in one transaction, then send them."""
        self._flush_scheduled = False
        if self._rows and not self._closed:  # once closed, the host's storage may be gone
            self.broadcast(self.sql.transaction(self.take_pending))

    def broadcast(self, chunks: list[Chunk]) -> None:
        """Send stored chunks to every live subscriber and socket, and wake every tail (a
        commit of deltas that nobody held as chunks stores rows all the same)."""
        rows, self._committing = self._committing, []
        for tail in self._tails:
            tail._offer(rows)
        if not chunks:
            return
        for sub in list(self._subscribers):
            sub._push(chunks)
        for ws in list(self._sockets):
            try:
                for chunk in chunks:
                    if chunk["sequence"] > self._sockets[ws]:
                        ws.send(chunk.to_json())
                self._sockets[ws] = chunks[-1]["sequence"]
            except Exception:  # a dead socket must not break the run
                self._sockets.pop(ws, None)

    def discard_pending(self) -> None:
        """Forget queued chunks (their sequences are reused; nobody has seen them)."""
        self._committing = []
        for tail in self._tails:  # rows it was offered may be rolled back: read storage
            tail._fresh = None
        if self._rows:
            self.sequence = self._rows[0][0] - 1
            self._pending = []
            self._rows.clear()
        self.search.forget()

    # -- reading --------------------------------------------------------------------------

    def _row_to_chunk(self, row: dict[str, Any]) -> Chunk:
        chunk = Chunk(type=row["type"], sequence=row["sequence"], agentId=self.agent_id,
                      agentType=self.agent_type, step=row["step"], timestamp=row["timestamp"])
        chunk.update(json.loads(row["body"]))
        if row["run_id"] is not None:
            chunk["runId"] = row["run_id"]
        chunk.body = row["body"]
        return chunk

    def read(self, after: int, limit: int) -> list[Chunk]:
        """Stored chunks with a sequence above ``after``, oldest first."""
        rows = self.sql.exec(
            "SELECT * FROM helix_chunks WHERE sequence > ? ORDER BY sequence LIMIT ?",
            after, limit)
        return [self._row_to_chunk(r) for r in rows]

    def read_wire(self, after: int, limit: int) -> list[Chunk]:
        """Like :meth:`read`, for a client that only sends the chunks on: each holds only its
        ``sequence`` and its wire form (:meth:`Chunk.to_json`), which SQLite builds from the
        row, so a replay decodes and re-encodes nothing in Python."""
        rows = self.sql.exec(_WIRE_PAGE, _names(self.agent_id, self.agent_type), after, limit)
        page = []
        for row in rows:
            chunk = Chunk(sequence=row["sequence"])
            chunk._wire = row["wire"]
            page.append(chunk)
        return page

    def read_text(self, after: int, limit: int, *, events: bool) -> StoredText:
        """Up to ``limit`` stored chunks after ``after`` as one text, built by SQLite in one
        row: their SSE events (``events=True``) or their JSON separated by commas."""
        rows = self.sql.exec(_EVENTS_PAGE if events else _JSON_PAGE,
                             _names(self.agent_id, self.agent_type), after, limit,
                             "" if events else ",")
        row = rows[0]
        return StoredText(row["count"], row["last"] or 0, row["text"] or "")

    def text_of(self, rows: list[tuple[Any, ...]], *, events: bool) -> StoredText:
        """What :meth:`read_text` would read for ``rows``, formatted from the rows a commit
        just stored instead of read back."""
        names, quoted, run_field = _names(self.agent_id, self.agent_type), _quoted, _run_field
        # _WIRE as an f-string (a quarter faster than ``%`` here, the hottest loop of an SSE
        # client's stream; tests hold the two to the same bytes), in one comprehension.
        wires = [f'{{"type": {quoted(kind)}, "sequence": {sequence}, {names}, "step": '
                 f'{"null" if step is None else step}, "timestamp": '
                 f'{"null" if timestamp is None else timestamp}{run_field(run_id)}'
                 f'{"}" if body == "{}" else ", " + body[1:]}'
                 for sequence, run_id, step, timestamp, kind, body in rows]
        if events:
            text = "".join([CHUNK_EVENT % (row[0], wire)
                            for row, wire in zip(rows, wires, strict=True)])
        else:
            text = ",".join(wires)
        return StoredText(len(rows), rows[-1][0], text)

    def subscribe(self, from_sequence: int = 0, *, follow: bool = False) -> Subscription:
        """Chunks after ``from_sequence``; ``follow=False`` ends when the session is idle."""
        self.flush()  # what is queued now is read from storage, not sent to this one
        sub = Subscription(self, from_sequence, follow=follow)
        self._subscribers.add(sub)
        return sub

    def tail(self, from_sequence: int = 0, *, follow: bool = False,
             events: bool = True) -> Tail:
        """Like :meth:`subscribe`, as pages of wire text (:class:`Tail`), for SSE."""
        self.flush()
        tail = Tail(self, from_sequence, follow=follow, events=events)
        self._tails.add(tail)
        return tail

    def attach_socket(self, ws: WebSocketLike, from_sequence: int = 0) -> None:
        """Replay stored chunks to a WebSocket, then keep it on the live fan-out."""
        self.flush()
        last = from_sequence
        while True:
            page = self.read_wire(last, PAGE)
            for chunk in page:
                ws.send(chunk.to_json())
                last = chunk["sequence"]
            if len(page) < PAGE:
                break
        self._sockets[ws] = last

    def detach_socket(self, ws: WebSocketLike) -> None:
        self._sockets.pop(ws, None)

    def wake_all(self) -> None:
        """Let idle subscribers notice that the session stopped executing."""
        for sub in [*self._subscribers, *self._tails]:
            sub._wake.set()

    def close_all(self) -> None:
        """The host is shutting down: store what is queued, then end every stream.

        Hosts close the storage next, so a flush still scheduled must not touch it."""
        try:
            self.flush()
        except Exception:  # the storage is already gone: nobody has seen these chunks
            self._pending = []
            self._rows.clear()
        self._closed = True
        for sub in [*self._subscribers, *self._tails]:
            sub.close()
        for ws in list(self._sockets):
            try:
                ws.close(1001, "object shutting down")
            except Exception:
                pass
        self._sockets.clear()
