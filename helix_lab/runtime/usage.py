"""``DOUsageStore``: token and cost accounting per session, with a rollup.

Every model call records one ``llm`` entry, priced in US dollars (``costUsd``) from
:mod:`helix_lab.pricing` or the agent's ``LLMConfig(pricing=...)``; a model with no known
price has ``costUsd: null``, never 0. Tools add their own entries through
``ToolContext.record_usage`` (their ``cost`` is taken as dollars). A custom store (``create_agent_server(usage_store=...)``)
only has to offer the same three async methods, :class:`UsageStore`.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from .sql import SqlStorage, SqlTables

__all__ = ["DOUsageStore", "UsageStore", "rollup"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS helix_usage (
    id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, run_id TEXT, step INTEGER,
    kind TEXT NOT NULL, name TEXT, model TEXT,
    input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0, cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0, metadata TEXT NOT NULL DEFAULT '{}', timestamp INTEGER NOT NULL,
    cost_usd REAL)"""

_FIELDS = {
    "sessionId": "session_id", "runId": "run_id", "step": "step", "kind": "kind",
    "name": "name", "model": "model", "inputTokens": "input_tokens",
    "outputTokens": "output_tokens", "cacheReadTokens": "cache_read_tokens",
    "cacheWriteTokens": "cache_write_tokens", "cost": "cost", "timestamp": "timestamp",
    "costUsd": "cost_usd",
}
_TOKENS = ("inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens")


class UsageStore(Protocol):
    async def record_entry(self, entry: dict[str, Any]) -> None: ...

    async def get_entries(self, session_id: str) -> list[dict[str, Any]]: ...

    async def get_rollup(self, session_id: str) -> dict[str, Any]: ...


def _group() -> dict[str, Any]:
    return {**dict.fromkeys(_TOKENS, 0), "cost": 0, "costUsd": None, "calls": 0,
            "unpricedCalls": 0}


def _add(group: dict[str, Any], entry: dict[str, Any]) -> None:
    for key in (*_TOKENS, "cost"):
        group[key] += entry.get(key) or 0
    group["calls"] += 1
    cost = entry.get("costUsd")
    if cost is None:
        group["unpricedCalls"] += 1
    else:
        group["costUsd"] = round((group["costUsd"] or 0.0) + cost, 9)


def rollup(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals overall, by kind, by model and by step.

    ``costUsd`` of a group is the sum of its priced entries, or ``None`` when none of
    them has a price; ``unpricedCalls`` counts the entries left out of it.
    """
    total = _group()
    by_kind: dict[str, dict[str, Any]] = {}
    by_model: dict[str, dict[str, Any]] = {}
    by_step: dict[str, dict[str, Any]] = {}
    for entry in entries:
        groups = [total, by_kind.setdefault(entry.get("kind") or "llm", _group())]
        if entry.get("model"):
            groups.append(by_model.setdefault(entry["model"], _group()))
        if entry.get("step") is not None:
            groups.append(by_step.setdefault(str(entry["step"]), _group()))
        for group in groups:
            _add(group, entry)
    total["totalTokens"] = total["inputTokens"] + total["outputTokens"]
    total["cost"] = round(total["cost"], 6)
    del total["calls"]
    return {"total": total, "byKind": by_kind, "byModel": by_model, "byStep": by_step,
            "entries": len(entries)}


class DOUsageStore(SqlTables):
    """Usage entries in the Durable Object's own SQLite."""

    SCHEMA = (_SCHEMA,)

    def __init__(self, sql: SqlStorage, session_id: str = "") -> None:
        super().__init__(sql)
        self.session_id = session_id
        columns = {row["name"] for row in sql.exec("PRAGMA table_info(helix_usage)")}
        if "cost_usd" not in columns:  # a store written before costs were priced
            sql.exec("ALTER TABLE helix_usage ADD COLUMN cost_usd REAL")

    def record_sync(self, entry: dict[str, Any]) -> None:
        """Insert at once; the executor calls this inside a step's transaction."""
        row = {column: entry.get(key) for key, column in _FIELDS.items()}
        row["session_id"] = row["session_id"] or self.session_id
        row["kind"] = row["kind"] or "llm"
        row["timestamp"] = row["timestamp"] or int(time.time() * 1000)
        for column in ("input_tokens", "output_tokens", "cache_read_tokens",
                       "cache_write_tokens", "cost"):
            row[column] = row[column] or 0
        if row["cost_usd"] is None and row["kind"] != "llm" and row["cost"]:
            row["cost_usd"] = row["cost"]  # a tool's own cost is in dollars
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

    def spent_usd(self) -> float:
        """Dollars spent by this session so far (priced entries only)."""
        rows = self.sql.exec("SELECT COALESCE(SUM(cost_usd), 0) AS spent FROM helix_usage")
        return float(rows[0]["spent"])
