"""A session's storage as rows, for ``GET /export``: what a ``.helix`` file is made of.

The rows are streamed as JSON Lines, so a session of any length leaves the object in
bounded memory::

    {"manifest": {"sessionId", "agentType", "status", "schema", "agent": {...} | null}}
    {"table": "helix_chunks", "row": {"sequence": 1, ...}}        # one line per row
    ...
    {"end": {"tables": {"helix_chunks": 812, ...}}}                # the counts, to check

Every ``helix_*`` table is exported except derived ones (the full-text index, which a
session rebuilds from its chunks). The export is a snapshot of the moment it was asked
for: the highest rowid of each table is read then, inside the object's input gate, and the
pages after it are read up to that bound. Messages, checkpoints, chunks and usage are
append-only, so rows written by a run that goes on meanwhile are simply left out.

Stdlib only and no filesystem: this runs in a Worker too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from .sql import SqlStorage

__all__ = ["FORMAT", "FORMAT_VERSION", "PAGE", "exported_tables", "stream_rows"]

FORMAT = "helix-session"
FORMAT_VERSION = 1
PAGE = 1000


def exported_tables(sql: SqlStorage) -> list[str]:
    """The ``helix_*`` tables that hold a session, without virtual tables (FTS5) and their
    shadow tables, which are rebuilt from the chunks."""
    rows = sql.exec("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND "
                    "name LIKE 'helix\\_%' ESCAPE '\\' ORDER BY name")
    virtual = [r["name"] for r in rows if (r["sql"] or "").upper().startswith("CREATE VIRTUAL")]
    return [r["name"] for r in rows if r["name"] not in virtual
            and not any(r["name"].startswith(v + "_") for v in virtual)]


def _line(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def stream_rows(sql: SqlStorage, manifest: dict[str, Any]) -> AsyncIterator[bytes]:
    """The export body: the manifest, every row of every table, then the counts.

    Call it inside the input gate: the bounds are read at once, the rows as it is read.
    """
    tables = exported_tables(sql)
    bounds = {t: int(sql.exec(f"SELECT coalesce(max(rowid), 0) AS m FROM {t}")[0]["m"])
              for t in tables}

    async def body() -> AsyncIterator[bytes]:
        yield _line({"manifest": {**manifest, "format": FORMAT,
                                  "formatVersion": FORMAT_VERSION}})
        counts = {}
        for table in tables:
            count, after = 0, 0
            while after < bounds[table]:
                rows = sql.exec(f"SELECT rowid AS \"__rowid\", * FROM {table} WHERE rowid > ? "
                                "AND rowid <= ? ORDER BY rowid LIMIT ?", after, bounds[table],
                                PAGE)
                if not rows:
                    break
                after = int(rows[-1]["__rowid"])
                yield b"".join(_line({"table": table, "row": {k: v for k, v in r.items()
                                                              if k != "__rowid"}})
                               for r in rows)
                count += len(rows)
            counts[table] = count
        yield _line({"end": {"tables": counts}})

    return body()
