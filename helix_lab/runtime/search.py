"""``SearchIndex``: full-text search over a session's chunks, with SQLite FTS5.

What is indexed: model text, thinking, tool inputs (the tool's name and its JSON input) and
tool outputs (or errors). Each hit names the chunk a user would jump to: its sequence,
step and type, with a snippet around the match.

Streamed text arrives as many small deltas, and an FTS5 row per delta would cost a large
share of what storing the delta costs. So the index has one row per kind of text per step
(its deltas joined, so no word is split) and one per tool call or result, written at the
end of a step. The stream hands each chunk to the index as it queues it (for a delta, a
list append: :meth:`SearchIndex.note_text`), so a step's text is joined in Python and
inserted as is, instead of being read back from the stored chunks and decoded by SQL; a
tool call's row is made from its fields the way SQL's ``json_extract`` reads them.
Each write of the index costs FTS5 a segment, so it is done every :data:`INDEX_EVERY`
chunks and at a run's end, and a search first indexes every finished step. Text of a step
still running is found once the step ends.

The gathered text covers exactly the chunks stored since the last write of the index. When
it may not (a transaction was rolled back; a host stopped before it wrote the index), the
index is written from the stored chunks by SQL instead (``INSERT ... SELECT``), and on
opening a session that is how what a stopped host left gets indexed
(:meth:`SearchIndex.catch_up`).

Durable Object SQLite has FTS5 too, so this runs unchanged in a Worker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypedDict

from ..errors import BackendError, BadRequestError
from .sql import SqlStorage, insert_rows

__all__ = ["INDEX_EVERY", "STEP_ENDS", "SearchHit", "SearchIndex", "SearchQueryError",
           "SearchUnavailableError"]

STEP_ENDS = frozenset({"checkpoint", "run_completed", "run_failed", "run_interrupted"})
"""Chunks after which everything stored so far can be indexed."""
INDEX_EVERY = 2048
"""Chunks that may wait for the index (each write of it costs the same whatever its size,
so it is written in large pieces; a search writes what waits first)."""

# columnsize=0: no per-row size table to write (ranking reads the sizes when it needs them).
_SCHEMA = """CREATE VIRTUAL TABLE IF NOT EXISTS helix_search USING fts5(
    body, type UNINDEXED, sequence UNINDEXED, last UNINDEXED, step UNINDEXED,
    columnsize=0)"""

# A tool call's row: its name and JSON input, or its output (or error).
_TOOL_ROW = """CASE type WHEN 'tool_start' THEN
               coalesce(json_extract(body, '$.toolName'), '') || ' ' ||
               coalesce(json_extract(body, '$.input'), '')
           ELSE coalesce(json_extract(body, '$.output'), json_extract(body, '$.error'), '')
           END, type, sequence, sequence, step"""
# Chunks in (?1, ?2], from storage: each step's text and thinking joined (in sequence
# order), then each tool call and result, all in order of their last chunk, so the newest
# row covers the furthest chunk.
_INDEX = f"""INSERT INTO helix_search (body, type, sequence, last, step)
    SELECT body, type, sequence, last, step FROM (
        SELECT group_concat(json_extract(body, '$.delta'), '') AS body, type,
               MIN(sequence) AS sequence, MAX(sequence) AS last, step
        FROM (SELECT body, type, sequence, step FROM helix_chunks
              WHERE sequence > ?1 AND sequence <= ?2 AND type IN ('text_delta', 'thinking')
              ORDER BY sequence)
        GROUP BY step, type
        UNION ALL
        SELECT {_TOOL_ROW} FROM helix_chunks
        WHERE sequence > ?1 AND sequence <= ?2 AND type IN ('tool_start', 'tool_end'))
    ORDER BY last"""
# The rows of a batch the stream gathered, and a tool chunk's row where SQL must read it.
_INSERT_ROW = "INSERT INTO helix_search (body, type, sequence, last, step) VALUES (?, ?, ?, ?, ?)"
_INSERT_TOOL = f"""INSERT INTO helix_search (body, type, sequence, last, step)
    SELECT {_TOOL_ROW} FROM helix_chunks WHERE sequence = ?"""
_TEXT_TYPES = frozenset({"text_delta", "thinking"})
_TOOL_TYPES = frozenset({"tool_start", "tool_end"})
_SNIPPET_TOKENS = 16


class SearchHit(TypedDict):
    """One match: the chunk to jump to and the text around the match (``«`` ``»`` mark it)."""

    sequence: int
    step: int
    type: str
    snippet: str


class SearchQueryError(BadRequestError):
    """FTS5 could not parse the query (a 400); the message says why."""


class SearchUnavailableError(BackendError):
    """501: this host's SQLite was built without FTS5."""

    status = 501
    default_code = "search_unavailable"


def _sql_value(value: Any) -> Any:
    """What SQLite's ``json_extract`` makes of a top-level JSON value: a string as is, an
    integer, true and false as 1 and 0, null as None, an object or array as compact JSON.
    :data:`_BY_SQL` where Python cannot be sure to agree (a float, whose text SQLite
    formats its own way; an integer too large for SQLite's)."""
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind is bool:
        return int(value)
    if kind is int:
        return value if -(2**63) <= value < 2**63 else _BY_SQL
    if kind is dict or kind is list:
        try:  # numbers inside keep the text they were stored with, as SQLite keeps it
            return json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            return _BY_SQL
    return _BY_SQL


_BY_SQL = object()


def _coalesce(*values: Any) -> Any:
    for value in values:
        if value is _BY_SQL:
            return _BY_SQL
        if value is not None:
            return value
    return ""


class _Batch:
    """What the stream wrote in (``start``, ``end``]: its text joined per step and kind, the
    rows of its tool chunks, and whether that is all of it (``exact``)."""

    __slots__ = ("end", "exact", "kind", "start", "texts", "tools")

    def __init__(self, start: int) -> None:
        self.start = start
        self.end = start
        self.kind = ""
        """The type of the chunk that ended the batch (a step's or a run's end)."""
        self.texts: dict[tuple[int, str], list[Any]] = {}
        """(step, type) -> [first sequence, last sequence, deltas]."""
        self.tools: list[tuple[Any, ...]] = []
        """A tool chunk's row, or just its sequence where SQL must read its JSON."""
        self.exact = True

    def rows(self) -> list[tuple[Any, ...]] | None:
        """The index rows, in order of their last chunk (as :data:`_INDEX` writes them): a
        row is (body, type, sequence, last, step), or (sequence,) for SQL to write. None
        where SQL would read a text otherwise (see :func:`_as_sql_reads`): SQL then writes
        them all."""
        rows: list[tuple[Any, ...]] = [
            ("".join(parts), kind, first, last, step)
            for (step, kind), (first, last, parts) in self.texts.items()]
        rows += self.tools
        for row in rows:
            if type(row[0]) is str and not _as_sql_reads(row[0]):
                return None
        rows.sort(key=lambda row: row[-2] if len(row) > 1 else row[0])
        return rows


def _as_sql_reads(text: str) -> bool:
    """Whether SQL reads ``text`` back from its JSON as it is: ``json_extract`` ends a
    string at a NUL, and a lone surrogate is not UTF-8."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class SearchIndex:
    """The FTS5 index of one session's chunks (stored in ``helix_chunks``)."""

    def __init__(self, sql: SqlStorage) -> None:
        self.sql = sql
        self.texts: dict[tuple[int, str], list[Any]] | None = None
        """The text groups of the batch being written, which the stream adds each delta to
        (None while the index is off)."""
        self._batch = _Batch(0)
        self._ready: list[_Batch] = []
        """Batches that ended at a step's end, stored, waiting to be indexed (oldest first)."""
        self.through = 0
        """Every chunk up to this sequence is indexed."""
        self.step_end = 0
        """The last chunk that ended a step (indexed before any search)."""
        self.available = True
        try:
            sql.exec(_SCHEMA)
        except Exception as exc:
            if "fts5" not in str(exc).lower():
                raise
            self.available = False
        if self.available:
            self.through = self._indexed_through()
            self._restart(self.through)

    @property
    def available(self) -> bool:
        """False where SQLite was built without FTS5 (sql.js, for one); Durable Object
        SQLite, Python's sqlite3 and the Pyodide test host's SQLite have it."""
        return self._available

    @available.setter
    def available(self, value: bool) -> None:
        self._available = value
        self.texts = self._batch.texts if value else None

    def _indexed_through(self) -> int:
        # The newest row covers the furthest chunk (FTS5 walks rowids backwards).
        rows = self.sql.exec("SELECT last FROM helix_search ORDER BY rowid DESC LIMIT 1")
        return int(rows[0]["last"]) if rows else 0

    def _restart(self, after: int) -> None:
        self._batch = _Batch(after)
        self.texts = self._batch.texts if self._available else None

    # -- what the stream writes -----------------------------------------------------------

    def note_text(self, kind: str, delta: str, sequence: int, step: int) -> None:
        """A text or thinking delta was queued (the stream inlines this for its deltas)."""
        group = self._batch.texts.get((step, kind))
        if group is None:
            self._batch.texts[(step, kind)] = [sequence, sequence, [delta]]
        else:
            group[1] = sequence
            group[2].append(delta)

    def note(self, chunk: Mapping[str, Any], sequence: int, step: int) -> None:
        """A chunk was queued: gather what of it is indexed; a step's end ends the batch."""
        if not self._available:
            return
        kind = chunk["type"]
        if kind in _TEXT_TYPES:
            delta = chunk.get("delta")
            if type(delta) is str:
                self.note_text(kind, delta, sequence, step)
            else:  # what SQL makes of it is SQL's business: index this batch from storage
                self._batch.exact = False
        elif kind in _TOOL_TYPES:
            if kind == "tool_start":
                name, given = _sql_value(chunk.get("toolName")), _sql_value(chunk.get("input"))
                body = (_BY_SQL if _BY_SQL in (name, given) else  # SQL's ||: text
                        f"{_coalesce(name)} {_coalesce(given)}")
            else:
                body = _coalesce(_sql_value(chunk.get("output")), _sql_value(chunk.get("error")))
            self._batch.tools.append((sequence,) if body is _BY_SQL
                                     else (body, kind, sequence, sequence, step))
        elif kind in STEP_ENDS:
            batch = self._batch
            batch.end, batch.kind = sequence, kind
            self._ready.append(batch)
            self._restart(sequence)

    def stored(self) -> None:
        """Everything noted is stored (in this transaction). At a run's end, or at a step's
        end once :data:`INDEX_EVERY` chunks wait, index it; a search indexes every finished
        step first, so each is found as soon as it ends."""
        if self._ready:
            last = self._ready[-1]
            self.step_end = last.end
            if last.kind != "checkpoint" or last.end - self.through >= INDEX_EVERY:
                self.index_through(last.end)

    def forget(self) -> None:
        """The stream dropped what it had queued (its transaction failed, which may have
        taken index rows with it): index from storage up to the next step's end."""
        if self._available:
            self.through = self._indexed_through()
            self.step_end = min(self.step_end, self.through)
            self._ready = []
            self._restart(self.through)
            self._batch.exact = False

    # -- writing the index ----------------------------------------------------------------

    def index_through(self, sequence: int) -> None:
        """Index the stored chunks up to ``sequence`` (a step's end, or all that is stored)."""
        if not self._available or sequence <= self.through:
            return
        rows: list[tuple[Any, ...]] = []
        while self._ready and self._ready[0].end <= sequence:
            batch = self._ready.pop(0)
            if batch.end <= self.through:
                continue
            gathered = batch.rows() if batch.exact and batch.start == self.through else None
            if gathered is None:
                self._insert(rows)
                rows = []
                self.sql.exec(_INDEX, self.through, batch.end)
            else:
                rows += gathered
            self.through = batch.end
        self._insert(rows)
        if sequence > self.through:  # not gathered here (a stopped host's chunks)
            self.sql.exec(_INDEX, self.through, sequence)
            self.through = sequence
            if self._batch.start < sequence:  # what it gathered is indexed now
                self._batch.exact = False

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        """Write gathered rows in order: in bulk, but a tool row SQL must read in its turn."""
        start = 0
        for i, row in enumerate(rows):
            if len(row) == 1:
                if i > start:
                    insert_rows(self.sql, _INSERT_ROW, rows[start:i])
                self.sql.exec(_INSERT_TOOL, row[0])
                start = i + 1
        if len(rows) > start:
            insert_rows(self.sql, _INSERT_ROW, rows[start:] if start else rows)

    def catch_up(self, last_stored: int) -> None:
        """Index what a host stored but did not index before it stopped."""
        self.index_through(last_stored)
        if self._available and self._batch.start < self.through:
            self._restart(self.through)

    def search(self, query: str, limit: int) -> list[SearchHit]:
        """The best ``limit`` matches of an FTS5 query, best first."""
        if not self.available:
            raise SearchUnavailableError(
                "This host's SQLite has no FTS5, so this session cannot be searched. "
                "Durable Objects, helix serve and the in-kernel backend have it.",
                code="search_unavailable", status=501)
        if self.step_end > self.through:
            self.sql.transaction(lambda: self.index_through(self.step_end))
        try:
            rows = self.sql.exec(
                "SELECT sequence, step, type, snippet(helix_search, 0, '«', '»', '…', ?) AS s "
                "FROM helix_search WHERE helix_search MATCH ? ORDER BY rank LIMIT ?",
                _SNIPPET_TOKENS, query, limit)
        except Exception as exc:  # sqlite3 here, a JS error in a Worker: both carry the reason
            raise SearchQueryError(
                f"The search query {query[:80]!r} is not valid FTS5 ({exc}). Use words, "
                '"quoted phrases", AND, OR, NOT and prefix*.', field="q",
                code="bad_query") from None
        return [SearchHit(sequence=int(r["sequence"]), step=int(r["step"]), type=r["type"],
                          snippet=r["s"]) for r in rows]
