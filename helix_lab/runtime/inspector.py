"""The step inspector: what the model saw and returned at one step, rebuilt from storage.

A step's messages are never stored twice. Each committed step leaves one small row of
pointers and measurements::

    helix_steps(checkpoint_id, branch, step, request_head, request_count, model,
                started_at, first_token_ms, duration_ms, tokens..., cost_usd, approvals)

``request_head`` is the last message the model was sent; the step's own messages (its
answer, then its tool results) follow it up to the step checkpoint's ``message_head``.
``GET /steps/{step}`` finds the row on the branch of a checkpoint (the head by default)
through the branch lineage, so opening step 10 of a 10,000-step session reads a handful of
rows, not the session. The messages sent come back newest last, at most ``limit`` of them
(``messagesOmitted`` says how many older ones were left out), which keeps the cost of
opening a step independent of how long the conversation had grown.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from typing import Any

from ..errors import NotFoundError
from .sql import SqlStorage, SqlTables
from .state_store import Checkpoint, message_prefix

__all__ = ["DEFAULT_MESSAGES", "StepLog", "StepRecord", "missing_step",
           "step_view", "tool_specs"]

DEFAULT_MESSAGES = 50
"""How many of the messages sent at a step ``GET /steps/{step}`` returns unless asked."""

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS helix_steps (
        checkpoint_id TEXT PRIMARY KEY, branch INTEGER NOT NULL, step INTEGER NOT NULL,
        request_head INTEGER, request_count INTEGER NOT NULL, model TEXT,
        started_at INTEGER NOT NULL, first_token_ms INTEGER, duration_ms INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL, approvals TEXT)""",
    "CREATE INDEX IF NOT EXISTS helix_steps_branch_step ON helix_steps (branch, step)",
    # Finding where a branch forked from its parent: its first checkpoint.
    "CREATE INDEX IF NOT EXISTS helix_checkpoints_branch_n ON helix_checkpoints (branch, n)",
]


@dataclass
class StepRecord:
    """What the executor knows about a step when it commits it."""

    step: int
    branch: int
    request_head: int | None
    request_count: int
    model: str
    started_at: int
    first_token_ms: int | None
    duration_ms: int
    usage: dict[str, Any]
    """``inputTokens``, ``outputTokens``, ``cacheReadTokens``, ``cacheWriteTokens``, ``costUsd``."""
    approvals: list[dict[str, Any]] | None = None


class StepLog(SqlTables):
    """``helix_steps`` on the object's SQL storage (needs ``helix_checkpoints`` first)."""

    SCHEMA = _SCHEMA

    def record(self, checkpoint_id: str, record: StepRecord) -> None:
        usage = record.usage
        self.sql.exec(
            "INSERT OR REPLACE INTO helix_steps (checkpoint_id, branch, step, request_head, "
            "request_count, model, started_at, first_token_ms, duration_ms, input_tokens, "
            "output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, approvals) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            checkpoint_id, record.branch, record.step, record.request_head,
            record.request_count, record.model, record.started_at, record.first_token_ms,
            record.duration_ms, usage.get("inputTokens", 0), usage.get("outputTokens", 0),
            usage.get("cacheReadTokens", 0), usage.get("cacheWriteTokens", 0),
            usage.get("costUsd"),
            json.dumps(record.approvals) if record.approvals else None)

    def find(self, step: int, ref: Checkpoint) -> dict[str, Any] | None:
        """The row of ``step`` on the lineage of checkpoint ``ref``: its branch up to it,
        then the branches it forked from, up to where each forked."""
        found = self.sql.exec("SELECT n FROM helix_checkpoints WHERE id = ?", ref.id)
        if not found:
            return None
        branch, upto = ref.branch, int(found[0]["n"])
        while True:
            rows = self.sql.exec(
                "SELECT s.*, c.message_head, c.message_count FROM helix_steps s "
                "JOIN helix_checkpoints c ON c.id = s.checkpoint_id "
                "WHERE s.branch = ? AND s.step = ? AND c.n <= ? ORDER BY c.n DESC LIMIT 1",
                branch, step, upto)
            if rows:
                return rows[0]
            fork = self.sql.exec(
                "SELECT p.branch, p.n, p.step FROM helix_checkpoints c "
                "JOIN helix_checkpoints p ON p.id = c.parent_id "
                "WHERE c.branch = ? ORDER BY c.n LIMIT 1", branch)
            if not fork or fork[0]["branch"] == branch or fork[0]["step"] < step:
                return None
            branch, upto = fork[0]["branch"], fork[0]["n"]


_SPECS: weakref.WeakKeyDictionary[Any, list[dict[str, Any]]] = weakref.WeakKeyDictionary()


def tool_specs(agent: Any) -> list[dict[str, Any]]:
    """An agent's tool specs, built once per agent: pydantic's schema generation costs
    more than reading the step itself."""
    specs = _SPECS.get(agent)
    if specs is None:
        specs = _SPECS[agent] = agent.tool_specs()
    return specs


def _response(message: dict[str, Any] | None) -> dict[str, Any]:
    text, thinking, calls = [], [], []
    content = message.get("content") if message else None
    if isinstance(content, str):
        text.append(content)
    for block in content if isinstance(content, list) else []:
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text", ""))
        elif kind == "thinking":
            thinking.append(block.get("thinking", ""))
        elif kind == "tool_use":
            calls.append({"toolCallId": block.get("id"), "toolName": block.get("name"),
                          "input": block.get("input")})
    return {"text": "".join(text), "thinking": "".join(thinking), "toolCalls": calls}


def _tool_results(message: dict[str, Any] | None) -> list[dict[str, Any]]:
    content = message.get("content") if message else None
    return [{"toolCallId": b.get("tool_use_id"), "output": b.get("content"),
             "isError": bool(b.get("is_error"))}
            for b in (content if isinstance(content, list) else [])
            if isinstance(b, dict) and b.get("type") == "tool_result"]


def step_view(sql: SqlStorage, row: dict[str, Any], *, system: str | None,
              tools: list[dict[str, Any]], limit: int = DEFAULT_MESSAGES) -> dict[str, Any]:
    """``GET /steps/{step}``'s body from a :meth:`StepLog.find` row."""
    own = row["message_count"] - row["request_count"]
    tail = message_prefix(sql, row["message_head"], own + limit)
    sent, produced = tail[: len(tail) - own], tail[len(tail) - own:]
    answer = next((m for m in produced if m.get("role") == "assistant"), None)
    results = next((m for m in produced if m.get("role") == "user"), None)
    body: dict[str, Any] = {
        "step": row["step"], "checkpointId": row["checkpoint_id"], "branch": row["branch"],
        "model": row["model"],
        "request": {"system": system, "tools": tools, "messages": sent,
                    "messageCount": row["request_count"],
                    "messagesOmitted": row["request_count"] - len(sent)},
        "response": _response(answer),
        "toolResults": _tool_results(results),
        "usage": {"inputTokens": row["input_tokens"], "outputTokens": row["output_tokens"],
                  "cacheReadTokens": row["cache_read_tokens"],
                  "cacheWriteTokens": row["cache_write_tokens"], "costUsd": row["cost_usd"]},
        "timing": {"startedAt": row["started_at"], "firstTokenMs": row["first_token_ms"],
                   "durationMs": row["duration_ms"]},
    }
    if row["approvals"]:
        body["approvals"] = json.loads(row["approvals"])
    return body


def missing_step(step: int, session_id: str) -> NotFoundError:
    return NotFoundError(f"Step {step} does not exist on this branch of session {session_id!r};"
                         " GET /checkpoints lists the steps (steps start at 1).",
                         code="step_not_found")
