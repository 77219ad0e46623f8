"""Where the emulated Workflows engine keeps instances, step results and events (SQLite).

One row per step, keyed by ``(instance, name, count)``: ``count`` is how many times the
instance had used that name when the step was called, which is how Cloudflare caches a
step that runs in a loop under one name. ``position`` is the step's place in the run, used
only to notice a step name that changed between two runs (see
:class:`~helix_lab.workflows.errors.NonDeterministicStepNameWarning`).

Events wait in ``wf_events`` until a ``wait_for_event`` step takes one; taking it and
storing that step's result happen in one transaction, so an event is never lost or used
twice across a crash.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from ..runtime.sql import SqlTables

__all__ = ["StepRow", "WorkflowStore"]

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS wf_instances (
        id TEXT PRIMARY KEY, status TEXT NOT NULL, params TEXT NOT NULL,
        output TEXT, error TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS wf_steps (
        instance_id TEXT NOT NULL, name TEXT NOT NULL, count INTEGER NOT NULL,
        type TEXT NOT NULL, position INTEGER NOT NULL, state TEXT NOT NULL,
        result TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0, wake_at REAL,
        started_at INTEGER, ended_at INTEGER,
        PRIMARY KEY (instance_id, name, count))""",
    """CREATE TABLE IF NOT EXISTS wf_events (
        n INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL, type TEXT NOT NULL,
        payload TEXT NOT NULL, timestamp INTEGER NOT NULL, taken_by TEXT)""",
    "CREATE INDEX IF NOT EXISTS wf_events_open ON wf_events (instance_id, type, taken_by)",
]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class StepRow:
    name: str
    count: int
    type: str
    position: int
    state: str
    """``running`` | ``done`` | ``failed`` | ``sleeping`` | ``waiting``."""
    result: str | None
    error: str | None
    attempts: int
    wake_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "count": self.count, "type": self.type,
                "position": self.position, "state": self.state, "attempts": self.attempts,
                "error": self.error}


class WorkflowStore(SqlTables):
    """The engine's tables on a :class:`~helix_lab.runtime.sql.SqlStorage`."""

    SCHEMA = _SCHEMA

    # -- instances ----------------------------------------------------------------------

    def insert_instance(self, instance_id: str, params: str) -> bool:
        """Create an instance row; ``False`` when the id is taken."""
        if self.instance(instance_id) is not None:
            return False
        ms = now_ms()
        self.sql.exec("INSERT INTO wf_instances VALUES (?, 'queued', ?, NULL, NULL, ?, ?)",
                      instance_id, params, ms, ms)
        return True

    def instance(self, instance_id: str) -> dict[str, Any] | None:
        rows = self.sql.exec("SELECT * FROM wf_instances WHERE id = ?", instance_id)
        return rows[0] if rows else None

    def set_status(self, instance_id: str, status: str, *, output: str | None = None,
                   error: str | None = None) -> None:
        self.sql.exec("UPDATE wf_instances SET status = ?, output = ?, error = ?, updated_at = ? "
                      "WHERE id = ?", status, output, error, now_ms(), instance_id)

    def instance_ids(self, statuses: tuple[str, ...]) -> list[str]:
        marks = ", ".join("?" for _ in statuses)
        rows = self.sql.exec(f"SELECT id FROM wf_instances WHERE status IN ({marks})", *statuses)
        return [r["id"] for r in rows]

    # -- steps --------------------------------------------------------------------------

    def steps(self, instance_id: str) -> list[StepRow]:
        rows = self.sql.exec("SELECT * FROM wf_steps WHERE instance_id = ? ORDER BY position",
                             instance_id)
        return [StepRow(r["name"], r["count"], r["type"], r["position"], r["state"], r["result"],
                        r["error"], r["attempts"], r["wake_at"]) for r in rows]

    def put_step(self, instance_id: str, row: StepRow) -> None:
        ended = now_ms() if row.state in ("done", "failed") else None
        self.sql.exec(
            "INSERT INTO wf_steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (instance_id, name, count) DO UPDATE SET type = excluded.type, "
            "position = excluded.position, state = excluded.state, result = excluded.result, "
            "error = excluded.error, attempts = excluded.attempts, wake_at = excluded.wake_at, "
            "ended_at = excluded.ended_at",
            instance_id, row.name, row.count, row.type, row.position, row.state, row.result,
            row.error, row.attempts, row.wake_at, now_ms(), ended)

    def delete_steps_from(self, instance_id: str, position: int) -> None:
        self.sql.exec("DELETE FROM wf_steps WHERE instance_id = ? AND position >= ?",
                      instance_id, position)

    # -- events -------------------------------------------------------------------------

    def add_event(self, instance_id: str, type_: str, payload: str) -> None:
        self.sql.exec("INSERT INTO wf_events (instance_id, type, payload, timestamp) "
                      "VALUES (?, ?, ?, ?)", instance_id, type_, payload, now_ms())

    def take_event(self, instance_id: str, type_: str, row: StepRow) -> dict[str, Any] | None:
        """The oldest untaken event of ``type_``, stored as ``row``'s result, atomically."""

        def take() -> dict[str, Any] | None:
            found = self.sql.exec(
                "SELECT n, payload, timestamp FROM wf_events WHERE instance_id = ? AND type = ? "
                "AND taken_by IS NULL ORDER BY n LIMIT 1", instance_id, type_)
            if not found:
                return None
            event = {"type": type_, "payload": json.loads(found[0]["payload"]),
                     "timestamp": found[0]["timestamp"]}
            self.sql.exec("UPDATE wf_events SET taken_by = ? WHERE n = ?",
                          f"{row.name}#{row.count}", found[0]["n"])
            row.state, row.result = "done", json.dumps(event)
            self.put_step(instance_id, row)
            return event

        return self.sql.transaction(take)
