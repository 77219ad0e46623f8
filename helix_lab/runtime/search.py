"""``SearchIndex``: full-text search over a session's chunks, with SQLite FTS5.

What is indexed: model text, thinking, tool inputs (the tool's name and its JSON input) and
tool outputs (or errors). Each hit names the chunk a user would jump to: its sequence,
step and type, with a snippet around the match.

Streamed text arrives as many small deltas, and an FTS5 row per delta would cost more
than the chunk itself. So consecutive deltas of one kind in one step are joined into one
row, written when the block ends (any other chunk ends it) or when it passes
:data:`SEGMENT_CHARS`, cut at a space so that no word is split. The rows go into the same
transaction as the chunks. The block still open when a host stops is rebuilt from the
stored chunks when the session is opened again (:meth:`SearchIndex.catch_up`).

Durable Object SQLite has FTS5 too, so this runs unchanged in a Worker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from ..errors import BackendError, BadRequestError
from .sql import SqlStorage

__all__ = ["SEGMENT_CHARS", "SearchHit", "SearchIndex", "SearchQueryError",
           "SearchUnavailableError"]

SEGMENT_CHARS = 2000
"""Streamed text is indexed at least every this many characters."""

_SCHEMA = """CREATE VIRTUAL TABLE IF NOT EXISTS helix_search USING fts5(
    body, type UNINDEXED, sequence UNINDEXED, last UNINDEXED, step UNINDEXED)"""
_INSERT = "INSERT INTO helix_search (body, type, sequence, last, step) VALUES (?, ?, ?, ?, ?)"
_DELTAS = frozenset({"text_delta", "thinking"})
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


@dataclass
class _Block:
    """Deltas of one kind and step, not indexed yet."""

    type: str
    step: int
    sequence: int
    last: int
    parts: list[str]
    size: int = 0


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class SearchIndex:
    """The FTS5 index of one session's chunks."""

    def __init__(self, sql: SqlStorage) -> None:
        self.sql = sql
        self.available = True
        """False where SQLite was built without FTS5 (sql.js, which the Pyodide test host
        uses); Durable Object SQLite and Python's sqlite3 have it."""
        try:
            sql.exec(_SCHEMA)
        except Exception as exc:
            if "fts5" not in str(exc).lower():
                raise
            self.available = False
        self._block: _Block | None = None
        self._rows: list[tuple[str, str, int, int, int]] = []

    # -- writing --------------------------------------------------------------------------

    def add(self, chunks: Iterable[Mapping[str, Any]]) -> None:
        """Index stored chunks (call inside the transaction that stores them)."""
        if not self.available:
            return
        for chunk in chunks:
            kind = chunk["type"]
            block = self._block
            if kind in _DELTAS:
                delta = chunk.get("delta") or ""
                if block is not None and (block.type != kind or block.step != chunk["step"]):
                    self._close()
                    block = None
                if block is None:
                    block = self._block = _Block(kind, chunk["step"], chunk["sequence"],
                                                 chunk["sequence"], [])
                block.parts.append(delta)
                block.size += len(delta)
                block.last = chunk["sequence"]
                if block.size >= SEGMENT_CHARS:
                    self._cut(block)
                continue
            if block is not None:
                self._close()
            if kind == "tool_start":
                body = f"{chunk.get('toolName', '')} {_as_text(chunk.get('input'))}"
            elif kind == "tool_end":
                body = _as_text(chunk["output"] if "output" in chunk else chunk.get("error"))
            else:
                continue
            self._rows.append((body, kind, chunk["sequence"], chunk["sequence"], chunk["step"]))
        self._write()

    def _close(self) -> None:
        block, self._block = self._block, None
        if block is not None and block.size:
            self._rows.append(("".join(block.parts), block.type, block.sequence, block.last,
                               block.step))

    def _cut(self, block: _Block) -> None:
        """Index a long block up to its last space; the partial word stays open."""
        text = "".join(block.parts)
        cut = max(text.rfind(" "), text.rfind("\n")) + 1
        if cut <= 0:
            cut = len(text)  # one enormous word: index it whole
        self._rows.append((text[:cut], block.type, block.sequence, block.last, block.step))
        rest = text[cut:]
        block.parts, block.size = [rest], len(rest)
        block.sequence = block.last

    def _write(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        bulk = getattr(self.sql, "executemany", None)
        if bulk is not None:
            bulk(_INSERT, rows)
        else:
            for row in rows:
                self.sql.exec(_INSERT, *row)

    def catch_up(self, read: Callable[[int, int], list[Any]], page: int = 2000) -> None:
        """Index stored chunks the index has not seen (the block open when a host stopped)."""
        if not self.available:
            return
        # Rows go in in sequence order, so the newest rowid covers the furthest chunk
        # (FTS5 walks rowids backwards without a scan).
        rows = self.sql.exec("SELECT last FROM helix_search ORDER BY rowid DESC LIMIT 1")
        last = int(rows[0]["last"]) if rows else 0
        self._block = None
        while True:
            chunks = read(last, page)
            if not chunks:
                return
            self.add(chunks)
            last = chunks[-1]["sequence"]

    # -- reading --------------------------------------------------------------------------

    def search(self, query: str, limit: int) -> list[SearchHit]:
        """The best ``limit`` matches of an FTS5 query, best first."""
        if not self.available:
            raise SearchUnavailableError(
                "This host's SQLite has no FTS5, so this session cannot be searched. "
                "Durable Objects, helix serve and the in-kernel backend have it.",
                code="search_unavailable", status=501)
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
