"""``DOUsageStore``: token and cost accounting per session, with a rollup.

Every model call records one ``llm`` entry; tools add their own through
``ToolContext.record_usage``. A custom store (``create_agent_server(usage_store=...)``)
only has to offer the same three async methods, :class:`UsageStore`.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from .sql import SqlStorage

__all__ = ["DOUsageStore", "UsageStore", "rollup"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS helix_usage (
    id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, run_id TEXT, step INTEGER,
    kind TEXT NOT NULL, name TEXT, model TEXT,
    input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0, cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0, metadata TEXT NOT NULL DEFAULT '{}', timestamp INTEGER NOT NULL)"""

_FIELDS = {
    "sessionId": "session_id", "runId": "run_id", "step": "step", "kind": "kind",
    "name": "name", "model": "model", "inputTokens": "input_tokens",
    "outputTokens": "output_tokens", "cacheReadTokens": "cache_read_tokens",
    "cacheWriteTokens": "cache_write_tokens", "cost": "cost", "timestamp": "timestamp",
}


class UsageStore(Protocol):
    async def record_entry(self, entry: dict[str, Any]) -> None: ...

    async def get_entries(self, session_id: str) -> list[dict[str, Any]]: ...

    async def get_rollup(self, session_id: str) -> dict[str, Any]: ...


def rollup(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals overall, by kind and by model."""
    keys = ("inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens", "cost")
    total = dict.fromkeys(keys, 0)
    by_kind: dict[str, dict[str, Any]] = {}
    by_model: dict[str, dict[str, Any]] = {}
    for entry in entries:
        groups = [total, by_kind.setdefault(entry.get("kind", "llm"),
                                            {**dict.fromkeys(keys, 0), "calls": 0})]
        if entry.get("model"):
            groups.append(by_model.setdefault(entry["model"],
                                              {**dict.fromkeys(keys, 0), "calls": 0}))
        for group in groups:
            for key in keys:
                group[key] += entry.get(key) or 0
            if group is not total:
                group["calls"] += 1
    total["totalTokens"] = total["inputTokens"] + total["outputTokens"]
    total["cost"] = round(total["cost"], 6)
    return {"total": total, "byKind": by_kind, "byModel": by_model, "entries": len(entries)}


class DOUsageStore:
    """Usage entries in the Durable Object's own SQLite."""

    def __init__(self, sql: SqlStorage, session_id: str = "") -> None:
        self.sql = sql
        self.session_id = session_id
        sql.exec(_SCHEMA)

    def record_sync(self, entry: dict[str, Any]) -> None:
        """Insert at once; the executor calls this inside a step's transaction."""
        row = {column: entry.get(key) for key, column in _FIELDS.items()}
        row["session_id"] = row["session_id"] or self.session_id
        row["kind"] = row["kind"] or "llm"
        row["timestamp"] = row["timestamp"] or int(time.time() * 1000)
        for column in ("input_tokens", "output_tokens", "cache_read_tokens",
                       "cache_write_tokens", "cost"):
            row[column] = row[column] or 0
        row["metadata"] = json.dumps(entry.get("metadata") or {})
        columns = ", ".join(row)
        self.sql.exec(f"INSERT INTO helix_usage ({columns}) VALUES "
                      f"({', '.join('?' for _ in row)})", *row.values())

    async def record_entry(self, entry: dict[str, Any]) -> None:
        self.record_sync(entry)

    async def get_entries(self, session_id: str | None = None) -> list[dict[str, Any]]:
        rows = self.sql.exec("SELECT * FROM helix_usage WHERE session_id = ? ORDER BY id",
                             session_id or self.session_id)
        entries = []
        for row in rows:
            entry = {key: row[column] for key, column in _FIELDS.items()}
            entry["metadata"] = json.loads(row["metadata"])
            entries.append(entry)
        return entries

    async def get_rollup(self, session_id: str | None = None) -> dict[str, Any]:
        return rollup(await self.get_entries(session_id))
