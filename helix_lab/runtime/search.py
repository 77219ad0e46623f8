"""``SearchIndex``: full-text search over a session's chunks, with SQLite FTS5.

What is indexed: model text, thinking, tool inputs (the tool's name and its JSON input) and
tool outputs (or errors). Each hit names the chunk a user would jump to: its sequence,
step and type, with a snippet around the match.

Streamed text arrives as many small deltas, and an FTS5 row (or even a line of Python) per
delta would cost a large share of what storing the delta costs. So the index is written
by SQL, at the end of a step: one ``INSERT ... SELECT`` in the transaction that stores the
step's end reads the stored chunks back and writes one row per kind of text per step (its
deltas joined, so no word is split) and one per tool call or result. Each such write costs
about the same however much it indexes, so it is done every :data:`INDEX_EVERY` chunks and
at a run's end, and a search first indexes every finished step. Text of a step still
running is found once the step ends. What a host did not index before it stopped is
indexed when the session is opened again (:meth:`SearchIndex.catch_up`).

Durable Object SQLite has FTS5 too, so this runs unchanged in a Worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from ..errors import BackendError, BadRequestError
from .sql import SqlStorage

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

# Chunks in (?1, ?2]: each step's text and thinking joined (in sequence order), then each
# tool call and result, all in order of their last chunk, so the newest row covers the
# furthest chunk.
_INDEX = """INSERT INTO helix_search (body, type, sequence, last, step)
    SELECT body, type, sequence, last, step FROM (
        SELECT group_concat(json_extract(body, '$.delta'), '') AS body, type,
               MIN(sequence) AS sequence, MAX(sequence) AS last, step
        FROM (SELECT body, type, sequence, step FROM helix_chunks
              WHERE sequence > ?1 AND sequence <= ?2 AND type IN ('text_delta', 'thinking')
              ORDER BY sequence)
        GROUP BY step, type
        UNION ALL
        SELECT CASE type WHEN 'tool_start' THEN
                   coalesce(json_extract(body, '$.toolName'), '') || ' ' ||
                   coalesce(json_extract(body, '$.input'), '')
               ELSE coalesce(json_extract(body, '$.output'), json_extract(body, '$.error'), '')
               END, type, sequence, sequence, step
        FROM helix_chunks
        WHERE sequence > ?1 AND sequence <= ?2 AND type IN ('tool_start', 'tool_end'))
    ORDER BY last"""
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


class SearchIndex:
    """The FTS5 index of one session's chunks (stored in ``helix_chunks``)."""

    def __init__(self, sql: SqlStorage) -> None:
        self.sql = sql
        self.available = True
        """False where SQLite was built without FTS5 (sql.js, for one); Durable Object
        SQLite, Python's sqlite3 and the Pyodide test host's SQLite have it."""
        try:
            sql.exec(_SCHEMA)
        except Exception as exc:
            if "fts5" not in str(exc).lower():
                raise
            self.available = False
        self.through = 0
        """Every chunk up to this sequence is indexed."""
        self.step_end = 0
        """The last chunk that ended a step (indexed before any search)."""
        if self.available:
            # The newest row covers the furthest chunk (FTS5 walks rowids backwards).
            rows = sql.exec("SELECT last FROM helix_search ORDER BY rowid DESC LIMIT 1")
            self.through = int(rows[0]["last"]) if rows else 0

    def add(self, chunks: Iterable[Mapping[str, Any]]) -> None:
        """Note chunks just stored (in this transaction). At a run's end, or at a step's end
        once :data:`INDEX_EVERY` chunks wait, index what is stored; a search indexes every
        finished step first, so each is found as soon as it ends."""
        if not self.available:
            return
        for chunk in reversed(chunks if isinstance(chunks, list) else list(chunks)):
            kind = chunk["type"]
            if kind in STEP_ENDS:
                self.step_end = chunk["sequence"]
                if kind != "checkpoint" or self.step_end - self.through >= INDEX_EVERY:
                    self.index_through(self.step_end)
                return

    def index_through(self, sequence: int) -> None:
        """Index the stored chunks up to ``sequence``."""
        if self.available and sequence > self.through:
            self.sql.exec(_INDEX, self.through, sequence)
            self.through = sequence

    def catch_up(self, last_stored: int) -> None:
        """Index what a host stored but did not index before it stopped."""
        self.index_through(last_stored)

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
