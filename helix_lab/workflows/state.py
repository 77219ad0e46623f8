"""``D1StateStore``: sessions, messages, checkpoints and usage of the Workflows approach, in D1.

Every write is idempotent (keyed rows, ``INSERT OR REPLACE``), because a step that dies
after writing and before its result is stored runs again: the second write lands on the
same rows. A session's conversation is the prefix of its ``messages`` rows shorter than
``message_count``, so restarting from an earlier step simply lowers that count.

:data:`SCHEMA` is also the D1 migration ``helix deploy --approach workflows`` writes.
"""

from __future__ import annotations

import json
import time
from typing import Any

__all__ = ["SCHEMA", "D1StateStore"]

SCHEMA = """CREATE TABLE IF NOT EXISTS helix_wf_sessions (
    session_id TEXT PRIMARY KEY, agent_type TEXT NOT NULL, status TEXT NOT NULL,
    run_id TEXT NOT NULL, instance_id TEXT NOT NULL, step_count INTEGER NOT NULL DEFAULT 0,
    message_count INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT '{}',
    output TEXT, error TEXT, interrupt_reason TEXT, parent_session_id TEXT,
    runs INTEGER NOT NULL DEFAULT 1, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS helix_wf_messages (
    session_id TEXT NOT NULL, n INTEGER NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (session_id, n));
CREATE TABLE IF NOT EXISTS helix_wf_checkpoints (
    id TEXT NOT NULL UNIQUE, session_id TEXT NOT NULL, run_id TEXT NOT NULL,
    step INTEGER NOT NULL, message_count INTEGER NOT NULL, state TEXT NOT NULL,
    status TEXT NOT NULL, created_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, run_id, step, status));
CREATE TABLE IF NOT EXISTS helix_wf_usage (
    session_id TEXT NOT NULL, run_id TEXT NOT NULL, step INTEGER NOT NULL,
    n INTEGER NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (session_id, run_id, step, n));
"""

_JSON_FIELDS = ("state", "output")


def now_ms() -> int:
    return int(time.time() * 1000)


class D1StateStore:
    """The state store on a D1 database (:class:`~helix_lab.workflows.LocalD1` or ``env.DB``)."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self._ready = False

    async def ensure_schema(self) -> None:
        if not self._ready:
            await self.db.exec(SCHEMA)
            self._ready = True

    # -- sessions -----------------------------------------------------------------------

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        await self.ensure_schema()
        row = await self.db.prepare(
            "SELECT * FROM helix_wf_sessions WHERE session_id = ?").bind(session_id).first()
        if row is None:
            return None
        for key in _JSON_FIELDS:
            row[key] = json.loads(row[key]) if row[key] is not None else None
        return row

    async def create_session(self, *, session_id: str, agent_type: str, run_id: str,
                             instance_id: str, state: dict[str, Any],
                             parent_session_id: str | None = None) -> None:
        await self.ensure_schema()
        ms = now_ms()
        await self.db.prepare(
            "INSERT INTO helix_wf_sessions (session_id, agent_type, status, run_id, instance_id, "
            "state, parent_session_id, created_at, updated_at) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)").bind(
            session_id, agent_type, run_id, instance_id, json.dumps(state), parent_session_id,
            ms, ms).run()

    async def update_session(self, session_id: str, **fields: Any) -> None:
        """Set the given columns (``state`` and ``output`` as JSON)."""
        await self.ensure_schema()
        names = sorted(fields)
        values = [json.dumps(fields[n]) if n in _JSON_FIELDS and fields[n] is not None
                  else fields[n] for n in names]
        sets = ", ".join(f"{n} = ?" for n in names)
        await self.db.prepare(
            f"UPDATE helix_wf_sessions SET {sets}, updated_at = ? WHERE session_id = ?").bind(
            *values, now_ms(), session_id).run()

    # -- messages -----------------------------------------------------------------------

    async def load_messages(self, session_id: str, count: int) -> list[dict[str, Any]]:
        rows = await self.db.prepare(
            "SELECT message FROM helix_wf_messages WHERE session_id = ? AND n < ? ORDER BY n"
        ).bind(session_id, count).all()
        return [json.loads(r["message"]) for r in rows["results"]]

    def put_messages(self, session_id: str, start: int, messages: list[dict[str, Any]]) -> list[Any]:
        """Statements writing ``messages`` at ``start``.. (for a batch with the session row)."""
        insert = self.db.prepare(
            "INSERT OR REPLACE INTO helix_wf_messages (session_id, n, message) VALUES (?, ?, ?)")
        return [insert.bind(session_id, start + i, json.dumps(m))
                for i, m in enumerate(messages)]

    # -- a committed step ---------------------------------------------------------------

    async def commit_step(self, *, session_id: str, run_id: str, step: int,
                          message_count: int, new_messages: list[dict[str, Any]],
                          state: dict[str, Any], status: str, output: Any,
                          checkpoint_id: str, usage: list[dict[str, Any]]) -> None:
        """Messages, state, usage, checkpoint and session status, in one D1 batch."""
        await self.ensure_schema()
        db = self.db
        total = message_count + len(new_messages)
        statements = self.put_messages(session_id, message_count, new_messages)
        usage_insert = db.prepare("INSERT OR REPLACE INTO helix_wf_usage VALUES (?, ?, ?, ?, ?)")
        statements += [usage_insert.bind(session_id, run_id, step, i, json.dumps(entry))
                       for i, entry in enumerate(usage)]
        statements.append(db.prepare(
            "INSERT OR REPLACE INTO helix_wf_checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?)").bind(
            checkpoint_id, session_id, run_id, step, total, json.dumps(state), status, now_ms()))
        statements.append(db.prepare(
            "UPDATE helix_wf_sessions SET step_count = ?, message_count = ?, state = ?, "
            "status = ?, output = ?, error = NULL, updated_at = ? WHERE session_id = ?").bind(
            step, total, json.dumps(state), status,
            json.dumps(output) if output is not None else None, now_ms(), session_id))
        await db.batch(statements)

    async def save_checkpoint(self, *, checkpoint_id: str, session_id: str, run_id: str,
                              step: int, message_count: int, state: dict[str, Any],
                              status: str) -> None:
        await self.db.prepare(
            "INSERT OR REPLACE INTO helix_wf_checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?)").bind(
            checkpoint_id, session_id, run_id, step, message_count, json.dumps(state), status,
            now_ms()).run()

    async def checkpoints(self, session_id: str) -> list[dict[str, Any]]:
        await self.ensure_schema()
        rows = await self.db.prepare(
            "SELECT id, run_id, step, message_count, status, created_at FROM "
            "helix_wf_checkpoints WHERE session_id = ? ORDER BY created_at, step").bind(
            session_id).all()
        return rows["results"]

    async def checkpoint(self, session_id: str, checkpoint_id: str) -> dict[str, Any] | None:
        row = await self.db.prepare(
            "SELECT * FROM helix_wf_checkpoints WHERE session_id = ? AND id = ?").bind(
            session_id, checkpoint_id).first()
        if row is not None:
            row["state"] = json.loads(row["state"])
        return row

    async def usage(self, session_id: str) -> list[dict[str, Any]]:
        await self.ensure_schema()
        rows = await self.db.prepare(
            "SELECT entry FROM helix_wf_usage WHERE session_id = ? ORDER BY run_id, step, n"
        ).bind(session_id).all()
        return [json.loads(r["entry"]) for r in rows["results"]]
