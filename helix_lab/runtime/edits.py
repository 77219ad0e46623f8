"""Editing a tool result before re-running what came after it (``editToolResults``).

``POST /resume`` with mode ``branch``, a ``checkpointId`` and
``editToolResults: [{"toolCallId", "output"}]`` forks at the step that produced those
results. The new branch shares every message before the results, holds the edited
results in a message of its own (a sibling in the message tree: nothing is rewritten),
and goes on from the next step, so nothing upstream is run again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequestError
from .sql import SqlStorage
from .wire import ToolResultEdit

__all__ = ["EditPlan", "plan_edits"]


@dataclass
class EditPlan:
    """Where the fork starts and the message that replaces the original results."""

    checkpoint_id: str
    """The checkpoint whose history ends with the edited results' message."""
    base_head: int | None
    """The message before the results: the new branch appends after it."""
    message: dict[str, Any]
    edited: list[str]


def _prefix_with_ids(sql: SqlStorage, head: int | None) -> list[dict[str, Any]]:
    if head is None:
        return []
    return sql.exec(
        """WITH RECURSIVE chain(id, parent_id, message, depth) AS (
               SELECT id, parent_id, message, 0 FROM helix_messages WHERE id = ?
               UNION ALL
               SELECT m.id, m.parent_id, m.message, chain.depth + 1
               FROM helix_messages m JOIN chain ON m.id = chain.parent_id)
           SELECT id, parent_id, message FROM chain ORDER BY depth""", head)


def plan_edits(sql: SqlStorage, head: int | None, edits: list[ToolResultEdit],
               field: str = "options.editToolResults") -> EditPlan:
    """Find the results to edit in the history ending at ``head``; writes nothing.

    Every edited call must be in that history and all of them in the same step (a later
    step is re-run anyway); otherwise :class:`BadRequestError` names the entry.
    """
    if not edits:
        raise BadRequestError(f"{field} is empty; give at least one "
                              '{"toolCallId", "output"}.',
                              field=field)
    wanted = {}
    for i, edit in enumerate(edits):
        if edit.tool_call_id in wanted:
            raise BadRequestError(f"{field}[{i}]: tool call {edit.tool_call_id!r} is edited "
                                  "twice.",
                                  field=f"{field}[{i}].toolCallId")
        wanted[edit.tool_call_id] = (i, edit)
    found: dict[str, Any] | None = None
    for row in _prefix_with_ids(sql, head):  # newest first: the latest result wins
        message = json.loads(row["message"])
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            continue
        ids = {b.get("tool_use_id") for b in content
               if isinstance(b, dict) and b.get("type") == "tool_result"}
        hits = ids & set(wanted)
        if hits:
            if hits != set(wanted):
                other = sorted(set(wanted) - hits)[0]
                i = wanted[other][0]
                raise BadRequestError(
                    f"{field}[{i}]: tool call {other!r} is not in the same step as "
                    f"{sorted(hits)[0]!r}; edit the results of one step at a time.",
                    field=f"{field}[{i}].toolCallId")
            found = {**row, "message": message}
            break
    if found is None:
        first = next(iter(wanted))
        raise BadRequestError(
            f"{field}[0]: no tool result {first!r} in the history of this checkpoint; "
            "GET /steps/{step} lists each step's tool results.",
            field=f"{field}[0].toolCallId")
    blocks = []
    for block in found["message"]["content"]:
        if isinstance(block, dict) and block.get("tool_use_id") in wanted:
            edit = wanted[block["tool_use_id"]][1]
            output = edit.output
            block = {**block, "content": output if isinstance(output, str)
                     else json.dumps(output), "is_error": edit.is_error}
        blocks.append(block)
    rows = sql.exec("SELECT id FROM helix_checkpoints WHERE message_head = ? ORDER BY n LIMIT 1",
                    found["id"])
    if not rows:  # results always end a step's messages; this is a broken history
        raise BadRequestError(f"{field}: the step that holds these results has no checkpoint.",
                              field=field)
    return EditPlan(checkpoint_id=rows[0]["id"], base_head=found["parent_id"],
                    message={**found["message"], "content": blocks}, edited=list(wanted))
